//! How far the read models have got, per aggregate: the checkpoints (the last sequence applied)
//! and the parked events (those that could not be applied, and those waiting behind them).
//! Both are written in the same transaction as the read models they describe.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Context as _;
use domain::wire::StoredEvent;
use sqlx::PgConnection;

use crate::chain::{Chain, Returned};
use crate::event::Incoming;
use crate::read_models::Mode;

/// The tables of the read-model schema that hold the progress.
pub const TABLES: &[&str] = &["projection_checkpoints", "parked_events"];

/// `(aggregate_type, aggregate_id)`.
pub(crate) type Aggregate = (String, String);

pub(crate) fn aggregate_of(event: &StoredEvent) -> Aggregate {
    (event.aggregate_type.clone(), event.aggregate_id.clone())
}

/// An event that is not applied but kept in `parked_events`.
#[derive(Debug, Clone)]
pub struct ParkedRow {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub global_position: Option<i64>,
    pub event_type: Option<String>,
    pub payload: String,
    pub error: String,
    pub blocked_by: Option<i64>,
}

/// The checkpoints a batch advances and the events it parks.
#[derive(Debug, Default)]
pub struct Progress {
    /// `(last_sequence, last_global_position)` per aggregate.
    pub checkpoints: BTreeMap<Aggregate, (i64, i64)>,
    pub parked: Vec<ParkedRow>,
}

impl Progress {
    /// Adds `other` (the progress of a later event) to `self`.
    pub fn merge(&mut self, other: Progress) {
        self.checkpoints.extend(other.checkpoints);
        self.parked.extend(other.parked);
    }
}

pub(crate) fn parked(event: &StoredEvent, error: String, blocked_by: Option<i64>) -> ParkedRow {
    ParkedRow {
        aggregate_type: event.aggregate_type.clone(),
        aggregate_id: event.aggregate_id.clone(),
        sequence: event.sequence,
        global_position: Some(event.global_position),
        event_type: Some(event.event_type.clone()),
        payload: event.payload.to_string(),
        error,
        blocked_by,
    }
}

/// An input parked as a whole; a stream message that could not be read at all is kept under
/// its stream sequence (it names no aggregate).
pub(crate) fn parked_incoming(incoming: &Incoming, error: String) -> ParkedRow {
    match incoming {
        Incoming::Event { event, .. } => parked(event, error, None),
        Incoming::Unreadable {
            stream,
            stream_sequence,
            raw,
            ..
        } => ParkedRow {
            aggregate_type: String::new(),
            aggregate_id: format!("stream:{stream}"),
            sequence: i64::try_from(*stream_sequence).unwrap_or(i64::MAX),
            global_position: None,
            event_type: None,
            payload: raw.clone(),
            error,
            blocked_by: None,
        },
    }
}

/// Why an event waits: an earlier event of its aggregate is parked.
pub(crate) fn blocked_error(root: i64) -> String {
    format!("waits behind parked sequence {root} of this aggregate")
}

/// Why an event is parked when the events before it are missing from the store.
pub(crate) fn gap_error(expected: i64, sequence: i64) -> String {
    format!(
        "sequence gap: events {expected}..{} of this aggregate are not in the event store",
        sequence - 1
    )
}

/// The checkpoints of `aggregates`, and the earliest parked sequence of those that are blocked.
pub(crate) async fn load(
    conn: &mut PgConnection,
    aggregates: &BTreeSet<Aggregate>,
) -> anyhow::Result<(HashMap<Aggregate, i64>, HashMap<Aggregate, i64>)> {
    let (types, ids): (Vec<String>, Vec<String>) = aggregates.iter().cloned().unzip();
    // In one round trip: the checkpoints, then (an aggregate is blocked by its earliest parked
    // event) the blocked aggregates.
    let rows: Vec<(bool, String, String, i64)> = sqlx::query_as(
        "SELECT false, c.aggregate_type, c.aggregate_id, c.last_sequence FROM projection_checkpoints c \
         JOIN public.aggregate_keys($1, $2) AS k(aggregate_type, aggregate_id) USING (aggregate_type, aggregate_id) \
         UNION ALL \
         SELECT true, p.aggregate_type, p.aggregate_id, min(p.sequence) FROM parked_events p \
         JOIN public.aggregate_keys($1, $2) AS k(aggregate_type, aggregate_id) USING (aggregate_type, aggregate_id) \
         GROUP BY p.aggregate_type, p.aggregate_id",
    )
    .bind(&types)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .context("loading checkpoints and parked aggregates")?;
    let (blocked, checkpoints): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(parked, ..)| *parked);
    let to_map =
        |rows: Vec<(bool, String, String, i64)>| rows.into_iter().map(|(_, t, i, s)| ((t, i), s)).collect();
    Ok((to_map(checkpoints), to_map(blocked)))
}

/// Writes the parked events and the checkpoints. Returns where `chain` returns how many events
/// were newly parked, if any was (a redelivered parked event is not parked twice).
pub(crate) fn flush(chain: &mut Chain, progress: &Progress, mode: Mode) -> Option<Returned> {
    let mut parked = None;
    if !progress.parked.is_empty() {
        let p = &progress.parked;
        parked = chain
            .counted(
                "parked_events",
                &format!(
                    "INSERT INTO parked_events (aggregate_type, aggregate_id, sequence, global_position, event_type, \
                     payload, error, blocked_by) \
                     SELECT unnest($1::text[]), unnest($2::text[]), unnest($3::bigint[]), unnest($4::bigint[]), unnest($5::text[]), unnest($6::text[]), \
                     unnest($7::text[]), unnest($8::bigint[]){}",
                    mode.on_conflict("(aggregate_type, aggregate_id, sequence) DO NOTHING")
                ),
            )
            .bind(p.iter().map(|r| r.aggregate_type.clone()).collect::<Vec<_>>())
            .bind(p.iter().map(|r| r.aggregate_id.clone()).collect::<Vec<_>>())
            .bind(p.iter().map(|r| r.sequence).collect::<Vec<_>>())
            .bind(p.iter().map(|r| r.global_position).collect::<Vec<_>>())
            .bind(p.iter().map(|r| r.event_type.clone()).collect::<Vec<_>>())
            .bind(p.iter().map(|r| r.payload.clone()).collect::<Vec<_>>())
            .bind(p.iter().map(|r| r.error.clone()).collect::<Vec<_>>())
            .bind(p.iter().map(|r| r.blocked_by).collect::<Vec<_>>())
            .returned();
    }
    if !progress.checkpoints.is_empty() {
        let c: Vec<_> = progress.checkpoints.iter().collect();
        chain
            .write(
                "projection_checkpoints",
                &format!(
                    "INSERT INTO projection_checkpoints (aggregate_type, aggregate_id, last_sequence, \
                     last_global_position) \
                     SELECT unnest($1::text[]), unnest($2::text[]), unnest($3::bigint[]), unnest($4::bigint[]){}",
                    mode.on_conflict(
                        "(aggregate_type, aggregate_id) DO UPDATE SET last_sequence = excluded.last_sequence, \
                         last_global_position = excluded.last_global_position"
                    )
                ),
            )
            .bind(c.iter().map(|((t, _), _)| t.clone()).collect::<Vec<_>>())
            .bind(c.iter().map(|((_, id), _)| id.clone()).collect::<Vec<_>>())
            .bind(c.iter().map(|(_, (s, _))| *s).collect::<Vec<_>>())
            .bind(c.iter().map(|(_, (_, p))| *p).collect::<Vec<_>>());
    }
    parked
}
