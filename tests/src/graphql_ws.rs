//! A GraphQL-over-websocket client for subscription tests: `graphql-ws-client` speaks
//! `graphql-transport-ws` (handshake, pings, subscribe / complete) over a tokio-tungstenite socket.
//!
//! Tests read the protocol messages of all their subscriptions in arrival order, each as the
//! server sent it (`{"id", "type": "next" | "error" | "complete", "payload"}`), so that they can
//! assert on ids, types and payloads.

use std::future::IntoFuture as _;
use std::time::Duration;

use futures::stream::{BoxStream, SelectAll};
use futures::{SinkExt as _, StreamExt as _};
use graphql_ws_client::graphql::GraphqlOperation;
use graphql_ws_client::Client;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long the server may take to acknowledge `connection_init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Results a subscription may have waiting before the connection stops reading.
const SUBSCRIPTION_BUFFER: usize = 256;

/// A GraphQL-over-websocket client speaking `graphql-transport-ws`, for subscription tests.
pub struct GraphqlWs {
    client: Client,
    messages: SelectAll<BoxStream<'static, Value>>,
}

impl GraphqlWs {
    /// Connects and initialises with `{"Authorization": "Bearer <key>"}` (no payload without a
    /// key). `Err` carries the server's reason when it refuses the connection.
    pub async fn connect(url: &str, key: Option<&str>) -> Result<Self, String> {
        let payload = match key {
            Some(key) => json!({ "Authorization": format!("Bearer {key}") }),
            None => json!({}),
        };
        Self::connect_with(url, payload).await
    }

    /// Connects as a storefront widget: `{"Authorization": "Bearer <publishable key>",
    /// "X-Customer-Token": "<jwt>"}`.
    pub async fn connect_as_customer(
        url: &str,
        publishable_key: &str,
        customer_token: &str,
    ) -> Result<Self, String> {
        let payload = json!({
            "Authorization": format!("Bearer {publishable_key}"),
            "X-Customer-Token": customer_token,
        });
        Self::connect_with(url, payload).await
    }

    /// Connects and initialises with `payload`.
    pub async fn connect_with(url: &str, payload: Value) -> Result<Self, String> {
        let mut request = url.into_client_request().expect("a websocket URL");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws".parse().expect("header value"),
        );
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|error| format!("connecting: {error}"))?;
        let builder = Client::build(Socket(socket))
            .payload(payload)
            .map_err(|error| error.to_string())?
            .subscription_buffer_size(SUBSCRIPTION_BUFFER);
        let (client, actor) = tokio::time::timeout(INIT_TIMEOUT, builder.build())
            .await
            .map_err(|_| "no reply to connection_init".to_owned())?
            .map_err(|error| error.to_string())?;
        // The actor runs the connection; it ends (closing the socket) once the client and all
        // its subscriptions are dropped.
        tokio::spawn(actor.into_future());
        Ok(Self {
            client,
            messages: SelectAll::new(),
        })
    }

    /// Starts a subscription; its messages carry `id`.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let operation = Operation {
            query: query.to_owned(),
            variables,
        };
        let subscription = self.client.subscribe(operation).await.expect("subscribing");
        let next_id = id.to_owned();
        let results = subscription.map(move |result| {
            let payload = result.expect("a JSON payload always decodes");
            protocol_message(&next_id, payload)
        });
        let complete = futures::stream::once(std::future::ready(json!({ "id": id, "type": "complete" })));
        self.messages.push(results.chain(complete).boxed());
    }

    /// The next protocol message (`next`, `error`, `complete`) of any subscription, in arrival
    /// order per subscription; `None` when the connection closed or nothing came within
    /// `timeout`.
    pub async fn next_message(&mut self, timeout: Duration) -> Option<Value> {
        tokio::time::timeout(timeout, self.messages.next())
            .await
            .ok()
            .flatten()
    }
}

/// The message a result came in: the client hands on a `next` payload as it is and an `error`
/// message's errors as `{"errors": [...]}`; a `next` payload always has `data` (null or not).
fn protocol_message(id: &str, payload: Value) -> Value {
    match payload.get("data") {
        Some(_) => json!({ "id": id, "type": "next", "payload": payload }),
        None => json!({ "id": id, "type": "error", "payload": payload["errors"] }),
    }
}

/// A query with its variables, answered with raw JSON.
#[derive(serde::Serialize)]
struct Operation {
    query: String,
    variables: Value,
}

impl GraphqlOperation for Operation {
    type Response = Value;
    type Error = serde_json::Error;

    fn decode(&self, data: Value) -> Result<Value, serde_json::Error> {
        Ok(data)
    }
}

/// The tokio-tungstenite socket as a `graphql-ws-client` connection (the crate ships this for
/// tungstenite releases up to 0.28; the workspace is on 0.29).
struct Socket(WebSocketStream<MaybeTlsStream<TcpStream>>);

impl graphql_ws_client::Connection for Socket {
    async fn receive(&mut self) -> Option<graphql_ws_client::Message> {
        use graphql_ws_client::Message as Received;
        loop {
            let message = match self.0.next().await? {
                Ok(message) => message,
                Err(error) => {
                    tracing::debug!(%error, "graphql websocket: receiving failed");
                    return None;
                }
            };
            return Some(match message {
                Message::Text(text) => Received::Text(text.as_str().to_owned()),
                Message::Ping(_) => Received::Ping,
                Message::Pong(_) => Received::Pong,
                Message::Close(frame) => Received::Close {
                    code: frame.as_ref().map(|frame| frame.code.into()),
                    reason: frame.map(|frame| frame.reason.to_string()),
                },
                Message::Binary(_) | Message::Frame(_) => continue,
            });
        }
    }

    async fn send(&mut self, message: graphql_ws_client::Message) -> Result<(), graphql_ws_client::Error> {
        use graphql_ws_client::Message as Sent;
        let message = match message {
            Sent::Text(text) => Message::text(text),
            Sent::Close { code, reason } => {
                Message::Close(code.zip(reason).map(|(code, reason)| CloseFrame {
                    code: code.into(),
                    reason: reason.into(),
                }))
            }
            Sent::Ping => Message::Ping(Default::default()),
            Sent::Pong => Message::Pong(Default::default()),
        };
        self.0
            .send(message)
            .await
            .map_err(|error| graphql_ws_client::Error::Send(error.to_string()))
    }
}
