//! The HTTP/2 peer a user would pick instead: gRPC-style unary calls over one h2 connection
//! per client (`h2`, the HTTP/2 implementation under hyper and tonic).
//!
//! A call is `POST /bench.Echo/Echo` with `content-type: application/grpc`, the request as one
//! gRPC length-prefixed message (5-byte prefix), answered with headers, the same message and
//! `grpc-status: 0` trailers — what tonic puts on the wire for a unary call, without protobuf
//! (the payload is opaque bytes, as in every other peer of the bench). The server handles each
//! request in its own task, as hyper does. Used only to measure rhizomorph against.

use std::io;
use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::net::TcpStream;

use super::rpc::RpcClient;

fn grpc_frame(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(payload.len() + 5);
    b.put_u8(0);
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

async fn read_body(mut body: h2::RecvStream) -> Result<BytesMut, h2::Error> {
    let mut data = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    Ok(data)
}

/// Starts the h2 echo server on 127.0.0.1; returns its address.
pub async fn start_server() -> io::Result<SocketAddr> {
    rhizomorph_testkit::serve_tcp(|tcp| async move {
        let Ok(mut conn) = h2::server::handshake(tcp).await else {
            return;
        };
        while let Some(Ok((request, mut respond))) = conn.accept().await {
            tokio::spawn(async move {
                let Ok(body) = read_body(request.into_body()).await else {
                    return;
                };
                let response = http::Response::builder()
                    .status(200)
                    .header("content-type", "application/grpc")
                    .body(())
                    .expect("a valid response");
                let Ok(mut send) = respond.send_response(response, false) else {
                    return;
                };
                let _ = send.send_data(body.freeze(), false);
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                let _ = send.send_trailers(trailers);
            });
        }
    })
    .await
}

/// One h2 client connection.
pub struct H2Client {
    send: h2::client::SendRequest<Bytes>,
}

/// Connects a client to `addr`.
pub async fn connect(addr: SocketAddr) -> io::Result<H2Client> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (send, connection) = h2::client::handshake(tcp).await.map_err(io::Error::other)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(H2Client { send })
}

impl RpcClient for H2Client {
    async fn call(&mut self, request: Bytes) -> io::Result<Bytes> {
        let mut send = self.send.clone().ready().await.map_err(io::Error::other)?;
        let req = http::Request::builder()
            .method("POST")
            .uri("http://127.0.0.1/bench.Echo/Echo")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("a valid request");
        let (response, mut body) = send.send_request(req, false).map_err(io::Error::other)?;
        body.send_data(grpc_frame(&request), true)
            .map_err(io::Error::other)?;
        let response = response.await.map_err(io::Error::other)?;
        let data = read_body(response.into_body())
            .await
            .map_err(io::Error::other)?;
        if data.len() < 5 {
            return Err(io::Error::other("short gRPC message"));
        }
        Ok(data.freeze().slice(5..))
    }
}
