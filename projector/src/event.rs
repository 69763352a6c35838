//! What the projector receives: stream messages carrying [`StoredEvent`]s, and rows of the
//! `events` table read back for gap filling and audits. A stored event is decoded into a domain
//! event by the domain's one codec ([`domain::codec`]); [`ApplyError`] is why an event is parked.

use chrono::{DateTime, Utc};
use domain::codec::CodecError;
use domain::wire::StoredEvent;
use sqlx::postgres::PgRow;
use sqlx::Row as _;

/// One input of a batch.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// A well-formed envelope (from the stream or from the event store).
    Event {
        event: StoredEvent,
        /// `true` when read from the `events` table (gap filling, replay) rather than delivered
        /// by JetStream; only stream deliveries count towards the consumer lag.
        from_store: bool,
    },
    /// A stream message whose envelope could not be read: parked under its stream sequence.
    Unreadable {
        stream: String,
        stream_sequence: u64,
        raw: String,
        error: String,
    },
}

impl Incoming {
    /// Decodes a stream message body.
    pub fn from_message(stream: &str, stream_sequence: u64, body: &[u8]) -> Self {
        match serde_json::from_slice::<StoredEvent>(body) {
            Ok(event) => Incoming::Event {
                event,
                from_store: false,
            },
            Err(error) => Incoming::Unreadable {
                stream: stream.to_owned(),
                stream_sequence,
                raw: String::from_utf8_lossy(body).into_owned(),
                error: format!("unreadable message: {error}"),
            },
        }
    }
}

/// The columns of `events` that make a [`StoredEvent`], in the order [`stored_event_from_row`]
/// reads them.
pub(crate) const EVENT_COLUMNS: &str = "event_id, global_position, aggregate_type, aggregate_id, sequence, \
     event_type, event_version, payload, metadata, committed_at";

pub(crate) fn stored_event_from_row(row: &PgRow) -> Result<StoredEvent, sqlx::Error> {
    Ok(StoredEvent {
        event_id: row.try_get("event_id")?,
        global_position: row.try_get("global_position")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        committed_at: row.try_get::<DateTime<Utc>, _>("committed_at")?,
    })
}

/// Up to `limit` events of the log after `after_position`, in global order.
pub async fn read_log(
    pool: &sqlx::PgPool,
    after_position: i64,
    limit: i64,
) -> anyhow::Result<Vec<StoredEvent>> {
    use anyhow::Context as _;
    let rows = sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS} FROM public.events WHERE global_position > $1 ORDER BY global_position LIMIT $2"
    ))
    .bind(after_position)
    .bind(limit)
    .fetch_all(pool)
    .await
    .context("reading the event store")?;
    rows.iter()
        .map(stored_event_from_row)
        .collect::<Result<_, _>>()
        .context("decoding an events row")
}

/// Why an event cannot be applied. The event is parked with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The stored event cannot be read (version, payload, type, aggregate id).
    #[error(transparent)]
    Decode(#[from] CodecError),
    #[error("{0}")]
    Invalid(String),
    #[error("arithmetic overflow in {0}")]
    Overflow(&'static str),
}
