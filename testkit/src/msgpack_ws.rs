//! The legacy baseline: plain msgpack over one WebSocket, the way hypha-rpc peers talk today.
//!
//! One WebSocket binary message per RPC message, `msgpack(header) ++ msgpack(extra)`, no
//! channels, no chunking, no flow control beyond TCP's. The echo server decodes the header to
//! route (as the hypha server does), re-encodes it with `from`/`to` swapped and forwards the
//! extra segment byte for byte; a message whose `session` is `bulk` is consumed (one-way). Used only to measure rhizomorph against, in the same run.

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use rmpv::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

/// Encodes the hypha-style routing header and the `{args: [payload]}` extra segment.
pub fn encode_message(session: &str, payload: &[u8]) -> Bytes {
    let header = Value::Map(vec![
        (Value::from("type"), Value::from("method")),
        (Value::from("from"), Value::from("ws-user-1/bench-client")),
        (Value::from("to"), Value::from("ws-user-1/bench-echo")),
        (Value::from("method"), Value::from("services.echo.echo")),
        (Value::from("session"), Value::from(session)),
    ]);
    let extra = Value::Map(vec![(
        Value::from("args"),
        Value::Array(vec![Value::Binary(payload.to_vec())]),
    )]);
    let mut out = Vec::with_capacity(payload.len() + 160);
    // Writing into a Vec cannot fail.
    rmpv::encode::write_value(&mut out, &header).expect("write to Vec");
    rmpv::encode::write_value(&mut out, &extra).expect("write to Vec");
    Bytes::from(out)
}

/// Splits a message into its decoded header and the extra segment's bytes (not decoded).
pub fn split_message(message: &[u8]) -> io::Result<(Value, &[u8])> {
    let mut cursor = io::Cursor::new(message);
    let header = rmpv::decode::read_value(&mut cursor).map_err(io::Error::other)?;
    let at = cursor.position() as usize;
    Ok((header, &message[at..]))
}

/// Decodes the payload from an extra segment `{args: [bin]}`.
pub fn payload_of(extra: &[u8]) -> io::Result<Vec<u8>> {
    let v = rmpv::decode::read_value(&mut io::Cursor::new(extra)).map_err(io::Error::other)?;
    let args = v
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("args")))
        .and_then(|(_, a)| a.as_array())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no args"))?;
    match args.first() {
        Some(Value::Binary(b)) => Ok(b.clone()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "args[0] is not bin",
        )),
    }
}

fn swap_route(header: Value) -> Value {
    match header {
        Value::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| match k.as_str() {
                    Some("from") => (Value::from("from"), Value::from("ws-user-1/bench-echo")),
                    Some("to") => (Value::from("to"), Value::from("ws-user-1/bench-client")),
                    _ => (k, v),
                })
                .collect(),
        ),
        other => other,
    }
}

/// The same WebSocket library settings rhizomorph uses where they matter for speed (an 8 KiB
/// read buffer: tungstenite zeroes it before every read), so the comparison is of protocols,
/// not of buffer sizes.
fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(rhizomorph::Config::default().ws_read_buffer)
        .max_message_size(Some(256 << 20))
        .max_frame_size(Some(256 << 20))
}

/// Starts the baseline echo server on 127.0.0.1; returns its address.
pub async fn start_server() -> io::Result<SocketAddr> {
    crate::serve_tcp(|tcp| async move {
        let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(ws_config())).await
        else {
            return;
        };
        let (mut sink, mut stream) = ws.split();
        while let Some(Ok(msg)) = stream.next().await {
            let WsMessage::Binary(data) = msg else {
                continue;
            };
            // Route as hypha does: decode the header only, forward the extra as is.
            let Ok((header, extra)) = split_message(&data) else {
                break;
            };
            // Session "bulk" marks a one-way transfer: consumed, not echoed.
            let is_bulk = header.as_map().is_some_and(|m| {
                m.iter()
                    .any(|(k, v)| k.as_str() == Some("session") && v.as_str() == Some("bulk"))
            });
            if is_bulk {
                continue;
            }
            let mut out = Vec::with_capacity(data.len() + 16);
            if rmpv::encode::write_value(&mut out, &swap_route(header)).is_err() {
                break;
            }
            out.extend_from_slice(extra);
            if sink
                .send(WsMessage::Binary(Bytes::from(out)))
                .await
                .is_err()
            {
                break;
            }
        }
    })
    .await
}

/// The sending half of a baseline client connection.
pub type BaselineSink = SplitSink<WebSocketStream<TcpStream>, WsMessage>;
/// The receiving half of a baseline client connection.
pub type BaselineStream = SplitStream<WebSocketStream<TcpStream>>;

/// Connects a baseline client to `addr` (through a shaper, possibly).
pub async fn connect(addr: SocketAddr) -> io::Result<(BaselineSink, BaselineStream)> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        format!("ws://{addr}/ws"),
        tcp,
        Some(ws_config()),
    )
    .await
    .map_err(io::Error::other)?;
    Ok(ws.split())
}

/// Receives one message and returns its payload (decoding header and extra, as a client does).
pub async fn recv_payload(stream: &mut BaselineStream) -> io::Result<Option<Vec<u8>>> {
    while let Some(msg) = stream.next().await {
        match msg.map_err(io::Error::other)? {
            WsMessage::Binary(data) => {
                let (_header, extra) = split_message(&data)?;
                return payload_of(extra).map(Some);
            }
            WsMessage::Close(_) => return Ok(None),
            _ => continue,
        }
    }
    Ok(None)
}

/// Sends one payload as a message.
pub async fn send_payload(
    sink: &mut BaselineSink,
    session: &str,
    payload: &[u8],
) -> io::Result<()> {
    let msg = encode_message(session, payload);
    sink.send(WsMessage::Binary(msg))
        .await
        .map_err(io::Error::other)
}
