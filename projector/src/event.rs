//! What the projector receives: stream messages carrying [`StoredEvent`]s, and rows of the
//! `events` table read back for gap filling and audits; and how a stored event is decoded into
//! a domain event.

use chrono::{DateTime, Utc};
use domain::wire::StoredEvent;
use domain::{MemberEvent, ProgramEvent};
use sqlx::postgres::PgRow;
use sqlx::Row as _;
use uuid::Uuid;

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

/// A member of an org, as named by a member aggregate id `org/uuid`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberKey {
    pub org_id: String,
    pub member_id: Uuid,
}

impl MemberKey {
    pub fn parse(aggregate_id: &str) -> Result<Self, ApplyError> {
        let bad = || ApplyError::Invalid(format!("member aggregate id '{aggregate_id}' is not 'org/uuid'"));
        let (org_id, member) = aggregate_id.split_once('/').ok_or_else(bad)?;
        let member_id = Uuid::parse_str(member).map_err(|_| bad())?;
        if org_id.is_empty() {
            return Err(bad());
        }
        Ok(MemberKey {
            org_id: org_id.to_owned(),
            member_id,
        })
    }

    pub fn aggregate_id(&self) -> String {
        format!("{}/{}", self.org_id, self.member_id)
    }
}

/// Why an event cannot be applied. The event is parked with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("unsupported event version '{version}' of {event_type} (this projector reads version 1)")]
    UnsupportedVersion { event_type: String, version: String },
    #[error("payload is not a {aggregate_type} event: {error}")]
    BadPayload { aggregate_type: String, error: String },
    #[error("event_type '{declared}' does not match the payload ({actual})")]
    TypeMismatch { declared: String, actual: String },
    #[error("{0}")]
    Invalid(String),
    #[error("arithmetic overflow in {0}")]
    Overflow(&'static str),
}

/// A decoded domain event.
#[derive(Debug, Clone)]
pub enum Decoded {
    Member(MemberKey, MemberEvent),
    Program(String, ProgramEvent),
    /// An aggregate type no read model is built from (checkpointed, otherwise ignored).
    Other,
}

pub fn decode(event: &StoredEvent) -> Result<Decoded, ApplyError> {
    if event.event_version != "1" {
        return Err(ApplyError::UnsupportedVersion {
            event_type: event.event_type.clone(),
            version: event.event_version.clone(),
        });
    }
    let bad_payload = |error: serde_json::Error| ApplyError::BadPayload {
        aggregate_type: event.aggregate_type.clone(),
        error: error.to_string(),
    };
    let check_type = |actual: &str| {
        if actual == event.event_type {
            Ok(())
        } else {
            Err(ApplyError::TypeMismatch {
                declared: event.event_type.clone(),
                actual: actual.to_owned(),
            })
        }
    };
    match event.aggregate_type.as_str() {
        "member" => {
            let key = MemberKey::parse(&event.aggregate_id)?;
            let decoded: MemberEvent = serde_json::from_value(event.payload.clone()).map_err(bad_payload)?;
            check_type(decoded.type_name())?;
            Ok(Decoded::Member(key, decoded))
        }
        "program" => {
            let decoded: ProgramEvent = serde_json::from_value(event.payload.clone()).map_err(bad_payload)?;
            let actual = match &decoded {
                ProgramEvent::ProgramConfigured { .. } => "ProgramConfigured",
                ProgramEvent::LocationRegistered { .. } => "LocationRegistered",
            };
            check_type(actual)?;
            Ok(Decoded::Program(event.aggregate_id.clone(), decoded))
        }
        _ => Ok(Decoded::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_aggregate_ids_are_org_slash_uuid() {
        let id = Uuid::new_v4();
        let key = MemberKey::parse(&format!("acme/{id}")).unwrap();
        assert_eq!(key.org_id, "acme");
        assert_eq!(key.member_id, id);
        assert_eq!(key.aggregate_id(), format!("acme/{id}"));
        assert!(MemberKey::parse("acme").is_err());
        assert!(MemberKey::parse("acme/not-a-uuid").is_err());
        assert!(MemberKey::parse(&format!("/{id}")).is_err());
    }
}
