//! A JetStream stream read back whole, for the tests that compare it with the event store.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{pull, AckPolicy, DeliverPolicy},
};
use domain::wire::StoredEvent;
use futures::StreamExt as _;

/// A message of the stream.
pub struct Received {
    pub subject: String,
    pub msg_id: String,
    pub event: StoredEvent,
}

/// Every message of `stream`, in stream order (none when there is no such stream).
pub async fn read_stream(jetstream: &jetstream::Context, stream: &str) -> Vec<Received> {
    let Ok(mut stream) = jetstream.get_stream(stream).await else {
        return Vec::new();
    };
    let count = stream.info().await.expect("stream info").state.messages as usize;
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("a reader of the stream");
    let mut messages = consumer.messages().await.expect("reading the stream");
    let mut received = Vec::with_capacity(count);
    while received.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("reading the stream timed out")
            .expect("the stream ended")
            .expect("a message");
        let msg_id = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get("Nats-Msg-Id"))
            .map(|value| value.as_str().to_owned())
            .expect("every message has a Nats-Msg-Id");
        received.push(Received {
            subject: message.subject.to_string(),
            msg_id,
            event: serde_json::from_slice(&message.payload).expect("a StoredEvent"),
        });
    }
    received
}
