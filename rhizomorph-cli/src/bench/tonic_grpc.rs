//! Real tonic: unary gRPC over `tonic::transport` (hyper + h2), the server built with
//! `Server::builder().add_service(..)` and each client a `tonic::transport::Channel` (one HTTP/2
//! connection), as a gRPC user runs it. The bench's rows are what users would put in
//! rhizomorph's place, so this one does not stand in for tonic: it is tonic.
//!
//! Owns the `bench.Echo/Echo` method, written out as tonic-build writes a service (the
//! `Service<http::Request<_>>` impl and `NamedService`), so no `protoc` is needed to build the
//! bench. The messages are opaque bytes through a pass-through [`BytesCodec`], as in every other
//! peer of the bench; with prost a `bytes` field would add a tag, a length and one copy each
//! way. Never changes tonic's defaults.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::{NamedService, UnaryService};
use tonic::Status;

use super::rpc::RpcClient;
use super::ServerSide;

/// The method's path, as tonic-build would name `service Echo { rpc Echo(..) }` in
/// `package bench`.
const PATH: &str = "/bench.Echo/Echo";

/// Passes a message's bytes through: the payload is the message.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesCodec;

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;

    fn encoder(&mut self) -> BytesCodec {
        BytesCodec
    }

    fn decoder(&mut self) -> BytesCodec {
        BytesCodec
    }
}

impl Encoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The echo service: answers each request with its own bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoServer;

/// The one method, as tonic-build's generated `*Svc` structs are.
struct EchoMethod;

impl UnaryService<Bytes> for EchoMethod {
    type Response = Bytes;
    type Future = BoxFuture<tonic::Response<Bytes>, Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        Box::pin(async move { Ok(tonic::Response::new(request.into_inner())) })
    }
}

impl<B> Service<http::Request<B>> for EchoServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() == PATH {
            return Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(BytesCodec);
                Ok(grpc.unary(EchoMethod, request).await)
            });
        }
        let unknown = format!("no method {} here (only {PATH})", request.uri().path());
        Box::pin(async move { Ok(Status::unimplemented(unknown).into_http()) })
    }
}

impl NamedService for EchoServer {
    const NAME: &'static str = "bench.Echo";
}

/// Starts the tonic server on the bench's server thread; returns its address.
pub async fn start(servers: &ServerSide) -> io::Result<SocketAddr> {
    servers
        .handle
        .spawn(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            // `Server::serve(addr)` sets TCP_NODELAY (tonic's default); an incoming stream
            // of our own has to ask for it (without it a call waits on delayed ACKs, ~40 ms).
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(EchoServer)
                    .serve_with_incoming(incoming),
            );
            Ok::<_, io::Error>(addr)
        })
        .await
        .map_err(io::Error::other)?
}

/// One tonic client: its own channel (one HTTP/2 connection), one call in flight.
pub struct TonicClient(tonic::client::Grpc<tonic::transport::Channel>);

/// Connects a client to the tonic server at `addr`.
pub async fn connect(addr: SocketAddr) -> io::Result<TonicClient> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(io::Error::other)?
        .connect()
        .await
        .map_err(io::Error::other)?;
    Ok(TonicClient(tonic::client::Grpc::new(channel)))
}

impl RpcClient for TonicClient {
    async fn call(&mut self, request: Bytes) -> io::Result<Bytes> {
        self.0.ready().await.map_err(io::Error::other)?;
        let path = http::uri::PathAndQuery::from_static(PATH);
        let answer = self
            .0
            .unary(tonic::Request::new(request), path, BytesCodec)
            .await
            .map_err(io::Error::other)?;
        Ok(answer.into_inner())
    }
}
