//! When the stream forgets what it acknowledged.
//!
//! JetStream acknowledges a publish once it is in the file store's buffers, not once it is on
//! disk (it syncs periodically), so a machine that crashes can bring NATS back without the last
//! messages it acknowledged; a stream restored from a backup, or deleted and created again,
//! lacks many more. The relay's checkpoint is past them; publishing on from it would leave them
//! out of the stream forever.
//!
//! Sequences tell: a stream that keeps its messages numbers them 1, 2, 3… and never hands out
//! a sequence twice, so every new
//! message the relay publishes must get a sequence above the highest one it has seen
//! acknowledged (kept with the checkpoint, so a restarted relay knows it too). A stream whose
//! last sequence is below that, or a new message acknowledged at or below it, means the tail
//! is gone. The surviving messages are a prefix of the relay's order (the relay is the stream's
//! only publisher and publishes in order), so the relay rewinds its checkpoint to the event of
//! the stream's last surviving message and publishes again from there; anything it already
//! re-sent since the loss is dropped by the `Nats-Msg-Id` duplicate window.

use anyhow::Context as _;
use async_nats::jetstream::{self, stream::RawMessageErrorKind};
use domain::wire::StoredEvent;
use sqlx::PgConnection;

use super::Checkpoint;

/// How far back from the stream's last sequence the relay looks for a message it can read
/// (messages an operator deleted or limits removed leave holes).
const SEARCH_BACK: u64 = 1_000;

/// The stream's last sequence (0 for an empty stream).
pub(super) async fn last_sequence(jetstream: &jetstream::Context, stream: &str) -> anyhow::Result<u64> {
    let mut stream = jetstream
        .get_stream(stream)
        .await
        .with_context(|| format!("looking up JetStream stream {stream}"))?;
    let info = stream.info().await.context("reading the stream's state")?;
    Ok(info.state.last_sequence)
}

/// The relay position of the event in the stream's message `sequence` or, when that message is
/// gone, in the closest earlier one; the start of the log when there is none.
pub(super) async fn position_at(
    jetstream: &jetstream::Context,
    stream: &str,
    conn: &mut PgConnection,
    sequence: u64,
) -> anyhow::Result<Checkpoint> {
    let stream = jetstream
        .get_stream(stream)
        .await
        .with_context(|| format!("looking up JetStream stream {stream}"))?;
    let lowest = sequence.saturating_sub(SEARCH_BACK).max(1);
    for sequence in (lowest..=sequence).rev() {
        let message = match stream.get_raw_message(sequence).await {
            Ok(message) => message,
            Err(error) if error.kind() == RawMessageErrorKind::NoMessageFound => continue,
            Err(error) => return Err(error).with_context(|| format!("reading stream message {sequence}")),
        };
        let event: StoredEvent = serde_json::from_slice(&message.payload)
            .with_context(|| format!("stream message {sequence} is not an event"))?;
        let tx_id: Option<String> =
            sqlx::query_scalar("SELECT tx_id::text FROM events WHERE global_position = $1")
                .bind(event.global_position)
                .fetch_optional(&mut *conn)
                .await
                .context("looking up the transaction of a relayed event")?;
        let tx_id = tx_id.with_context(|| {
            format!(
                "stream message {sequence} holds event {} which the events table does not have",
                event.global_position
            )
        })?;
        return Ok(Checkpoint {
            tx_id: tx_id.parse().context("bad tx_id")?,
            global_position: event.global_position,
        });
    }
    Ok(Checkpoint::START)
}
