//! tarpc over rhizomorph (cargo feature `tarpc`): a tarpc service moves onto rhizomorph by
//! changing the lines that open its transport, and gains prioritized channels, cancellation
//! that reaches the server, and many services on one connection.
//!
//! - [`ClientTransport`]: what `tarpc::client::new(config, transport)` takes. Each request is
//!   one rhizomorph call ([`Sender::call`](crate::Sender::call), wire.md §20.1) on the channel
//!   the request chooses ([`ClientTransport::with_channels`]; `rpc` by default), its response
//!   the reply. Dropping a tarpc call cancels the rhizomorph call (§5.7, §20.2).
//! - [`ServerTransport`]: what `tarpc::server::BaseChannel::with_defaults(transport)` takes,
//!   for one connection, or one service of it through [`Services`].
//! - On the wire, a request's header carries `service`, `method`, `deadline` (milliseconds
//!   left), `session` and, for a traced caller (a trace id that is not zero), `trace-id`, so
//!   a router forwards it without decoding the payload; the payload is the request body, and
//!   the reply's the `Result` of the response, as bincode 1 with fixed-width integers (the
//!   codec tarpc's own TCP `serde_transport` offers, so a service's types need nothing new;
//!   see `codec` for why not varint). A big request or response is framed and chunked by
//!   rhizomorph (§8), never by the adapter.
//!
//! Never spawns a task, never decodes a payload it does not own, never holds a lock across
//! an await.
//!
//! ```no_run
//! use rhizomorph::{Channel, Config, Endpoint, Listener};
//! use rhizomorph::tarpc::{ClientTransport, ServerTransport};
//! use futures_util::StreamExt;
//! use tarpc::server::Channel as _;
//!
//! #[tarpc::service]
//! trait Store {
//!     async fn status() -> String;
//!     async fn upload(data: Vec<u8>) -> usize;
//! }
//!
//! #[derive(Clone)]
//! struct Server;
//! impl Store for Server {
//!     async fn status(self, _: tarpc::context::Context) -> String { "ok".into() }
//!     async fn upload(self, _: tarpc::context::Context, data: Vec<u8>) -> usize { data.len() }
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // Server: one tarpc channel per connection (before: `serde_transport::tcp::listen`).
//! let listener = Listener::bind("127.0.0.1:0", Config::default()).await?;
//! let url = listener.url();
//! tokio::spawn(async move {
//!     while let Ok(conn) = listener.accept().await {
//!         let channel = tarpc::server::BaseChannel::with_defaults(ServerTransport::new(conn));
//!         tokio::spawn(channel.execute(Server.serve()).for_each(|f| async move {
//!             tokio::spawn(f);
//!         }));
//!     }
//! });
//!
//! // Client (before: `serde_transport::tcp::connect`): uploads ride `bulk`, so a big one
//! // never delays a status call.
//! let conn = Endpoint::connect(&url, Config::default()).await?;
//! let transport = ClientTransport::new(conn.sender(), "store").with_channels(|req| match req {
//!     StoreRequest::Upload { .. } => Channel::Bulk,
//!     _ => Channel::Rpc,
//! });
//! let client = StoreClient::new(tarpc::client::Config::default(), transport).spawn();
//! assert_eq!(client.status(tarpc::context::current()).await?, "ok");
//! # Ok(()) }
//! ```

mod client;
mod codec;
mod server;
mod services;

pub use client::{ChannelOf, ClientTransport};
pub use codec::{DEADLINE, MAX_DEADLINE, METHOD, SERVICE, TRACE};
pub use server::{ServerTransport, MAX_PENDING};
pub use services::{Services, SERVICE_QUEUE};

/// What fails a tarpc transport as a whole (a single call's failure is a tarpc `ServerError`
/// for that call instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The rhizomorph connection ended or refused the message; its error says why.
    #[error("rhizomorph connection: {0}")]
    Connection(#[source] crate::Error),
}
