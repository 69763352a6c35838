//! The relay (SPEC §5): publishes every committed row of the `events` table to JetStream, in
//! order, none lost, none doubled.
//!
//! - **Finished transactions only.** A `global_position` is taken at insert but becomes visible
//!   at commit, so reading `position > checkpoint` would skip a row whose transaction commits
//!   after a later one. The relay reads rows with `tx_id < events_horizon()` (every transaction
//!   that could still add such rows has finished: `pg_snapshot_xmin` of the current snapshot,
//!   leaving out the transactions of sessions that cannot write events, the projector's, so that
//!   its batches do not hold back what it waits for; migration 0016) in
//!   `(tx_id, global_position)` order; in that order no row can ever appear behind the
//!   checkpoint.
//! - **Checkpoint after the acks.** A batch is published with a bounded window of in-flight
//!   publishes (acks awaited in order, not one publish at a time); once every ack of the batch is
//!   in, `(tx_id, global_position)` of its last row is stored in `relay_checkpoints`. A crash
//!   between the two republishes part of a batch, which JetStream drops as duplicates thanks to
//!   `Nats-Msg-Id = <aggregate_type>:<aggregate_id>:<sequence>` and the stream's
//!   `duplicate_window` (10 minutes by default). A relay down for longer than that may publish
//!   up to one batch twice; consumers stay exact by their per-aggregate sequence checkpoints
//!   (SPEC §6).
//! - **One relay at a time.** The relay holds a session-level advisory lock (keyed by stream) on
//!   the connection it does all its reading and checkpointing with; another process waits for it.
//!   If that connection dies, Postgres releases the lock and the relay starts over.
//! - **Wake-up.** A trigger on `events` NOTIFYs at commit; the relay LISTENs and also polls.
//! - **A stream that lost its tail** (a machine crash before NATS synced what it acknowledged,
//!   a stream restored or re-created) is found by its sequences and refilled from the last
//!   event it still holds ([`tail`]).

mod tail;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{bail, Context as _};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage, stream};
use backon::{ConstantBuilder, Retryable as _};
use chrono::{DateTime, Utc};
use common::config::NatsArgs;
use domain::wire::{self, StoredEvent};
use sqlx::postgres::PgListener;
use sqlx::{Connection as _, PgConnection};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long the relay pauses before it starts over after a failure.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// How long a JetStream request (a publish's ack) may take before the relay starts over. The
/// acks of what a killed server never received never come; async-nats' default of 5 s kept the
/// read models that much behind a NATS restart.
const JETSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// The channel the `events` insert trigger notifies (migration 0003).
pub const NOTIFY_CHANNEL: &str = "loyalty_events_inserted";

/// Relay settings (flags and environment).
#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    /// Rows read and published per batch (the checkpoint is written once per batch).
    #[arg(long, global = true, env = "RELAY_BATCH_SIZE", default_value_t = 500)]
    pub relay_batch_size: u32,
    /// Publishes awaiting their JetStream ack at any time.
    #[arg(long, global = true, env = "RELAY_MAX_IN_FLIGHT", default_value_t = 128)]
    pub relay_max_in_flight: usize,
    /// Poll interval when no notification arrives, in milliseconds.
    #[arg(long, global = true, env = "RELAY_POLL_INTERVAL_MS", default_value_t = 500)]
    pub relay_poll_interval_ms: u64,
    /// After a notification, how long to let further commits gather before reading, in
    /// milliseconds: under load one read and one checkpoint then serve many commits instead of
    /// one each, for that much added latency.
    #[arg(long, global = true, env = "RELAY_LINGER_MS", default_value_t = 3)]
    pub relay_linger_ms: u64,
    /// JetStream duplicate window of the stream, in seconds: how long after a crash a
    /// republished event is still recognised as a duplicate.
    #[arg(
        long,
        global = true,
        env = "RELAY_DUPLICATE_WINDOW_SECS",
        default_value_t = 600
    )]
    pub relay_duplicate_window_secs: u64,
}

impl Default for RelayArgs {
    fn default() -> Self {
        Self {
            relay_batch_size: 500,
            relay_max_in_flight: 128,
            relay_poll_interval_ms: 500,
            relay_linger_ms: 3,
            relay_duplicate_window_secs: 600,
        }
    }
}

/// Everything a relay needs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The relay opens connections of its own (outside any pool): one holds the lock, one
    /// listens.
    pub database_url: String,
    pub nats: NatsArgs,
    pub args: RelayArgs,
}

/// A position in the relay's order of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Checkpoint {
    pub tx_id: u64,
    pub global_position: i64,
}

impl Checkpoint {
    /// Before the first event.
    pub const START: Checkpoint = Checkpoint {
        tx_id: 0,
        global_position: 0,
    };
}

/// Where the relay has got to: in the log, and in the stream (the highest sequence the stream
/// acknowledged to it, see [`tail`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub checkpoint: Checkpoint,
    pub acked_sequence: u64,
}

/// How a batch went.
enum Published {
    /// Every row acknowledged; the last one's position.
    All(Checkpoint),
    /// The stream acknowledged a new message at a sequence it had already given out: it lost
    /// its messages after `kept`.
    TailLost { kept: u64 },
}

/// What a relay is doing, for tests and readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayState {
    Starting,
    /// Waiting for another relay to release the lock.
    Standby,
    /// Holding the lock and publishing.
    Leader,
    Stopped,
}

/// The relay of one stream.
pub struct Relay {
    config: RelayConfig,
    nats: async_nats::Client,
    jetstream: jetstream::Context,
    state: watch::Sender<RelayState>,
}

#[derive(sqlx::FromRow)]
struct Row {
    tx_id: String,
    global_position: i64,
    event_id: Uuid,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: serde_json::Value,
    metadata: serde_json::Value,
    committed_at: DateTime<Utc>,
}

impl Relay {
    pub fn new(config: RelayConfig, nats: async_nats::Client) -> Self {
        let mut jetstream = jetstream::new(nats.clone());
        jetstream.set_timeout(JETSTREAM_TIMEOUT);
        Self {
            config,
            jetstream,
            nats,
            state: watch::Sender::new(RelayState::Starting),
        }
    }

    /// Follows the relay's state.
    pub fn state(&self) -> watch::Receiver<RelayState> {
        self.state.subscribe()
    }

    /// Runs until `shutdown`, starting over (after [`RESTART_PAUSE`]) after any failure.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let stream = self.config.nats.nats_stream.clone();
        let led = (|| self.lead(&shutdown))
            .retry(
                ConstantBuilder::default()
                    .with_delay(RESTART_PAUSE)
                    .without_max_times(),
            )
            .sleep({
                let shutdown = shutdown.clone();
                move |pause| {
                    let shutdown = shutdown.clone();
                    async move {
                        tokio::select! {
                            () = shutdown.cancelled() => {}
                            () = tokio::time::sleep(pause) => {}
                        }
                    }
                }
            })
            .when(|_| !shutdown.is_cancelled())
            .notify(|error, _| {
                tracing::warn!(stream = %stream, error = format!("{error:#}"), "relay failed; starting over");
                metrics::gauge!("relay_leader", "stream" => stream.clone()).set(0.0);
                self.state.send_replace(RelayState::Starting);
            })
            .await;
        if let Err(error) = led {
            tracing::warn!(stream = %stream, error = format!("{error:#}"), "relay failed while stopping");
        }
        metrics::gauge!("relay_leader", "stream" => stream.clone()).set(0.0);
        self.state.send_replace(RelayState::Stopped);
        Ok(())
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.config.args.relay_poll_interval_ms.max(10))
    }

    /// Creates the stream, or makes sure an existing one carries our subjects and duplicate
    /// window (other settings an operator made are kept).
    pub async fn ensure_stream(&self) -> anyhow::Result<()> {
        let nats = &self.config.nats;
        let subjects = wire::all_subjects(&nats.nats_subject_prefix);
        let duplicate_window = Duration::from_secs(self.config.args.relay_duplicate_window_secs);
        let stream = self
            .jetstream
            .get_or_create_stream(stream::Config {
                name: nats.nats_stream.clone(),
                subjects: vec![subjects.clone()],
                storage: stream::StorageType::File,
                duplicate_window,
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating JetStream stream {}", nats.nats_stream))?;
        let mut config = stream.cached_info().config.clone();
        if !config.subjects.contains(&subjects) || config.duplicate_window != duplicate_window {
            if !config.subjects.contains(&subjects) {
                config.subjects.push(subjects);
            }
            config.duplicate_window = duplicate_window;
            self.jetstream
                .update_stream(config)
                .await
                .with_context(|| format!("updating JetStream stream {}", nats.nats_stream))?;
        }
        Ok(())
    }

    /// Waits for the lock, then publishes until `shutdown` or a failure.
    async fn lead(&self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        if shutdown.is_cancelled() {
            // Stopped during the pause before a restart.
            return Ok(());
        }
        let stream = self.config.nats.nats_stream.clone();
        self.ensure_stream().await?;
        let mut conn = PgConnection::connect(&self.config.database_url)
            .await
            .context("connecting the relay to Postgres")?;

        self.state.send_replace(RelayState::Standby);
        loop {
            let locked: bool =
                sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('loyalty-relay'), hashtext($1))")
                    .bind(&stream)
                    .fetch_one(&mut conn)
                    .await
                    .context("taking the relay lock")?;
            if locked {
                break;
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.poll_interval()) => {}
            }
        }
        tracing::info!(stream = %stream, "relay is the leader");
        self.state.send_replace(RelayState::Leader);
        metrics::gauge!("relay_leader", "stream" => stream.clone()).set(1.0);

        let mut listener = PgListener::connect(&self.config.database_url)
            .await
            .context("connecting the relay's listener")?;
        listener.listen(NOTIFY_CHANNEL).await.context("LISTEN")?;

        let mut position = load_position(&mut conn, &stream).await?;
        let mut connects = self.nats.statistics().connects.load(Ordering::Relaxed);
        self.verify_tail(&mut conn, &mut position).await?;
        tracing::info!(
            stream = %stream,
            global_position = position.checkpoint.global_position,
            acked_sequence = position.acked_sequence,
            "relay starts from its checkpoint"
        );
        let batch_size = i64::from(self.config.args.relay_batch_size.max(1));
        let linger = Duration::from_millis(self.config.args.relay_linger_ms);
        // Whether the log is drained as far as the last read could see: then wait for a
        // commit's notification (or the poll) before reading again.
        let mut drained = false;
        // When the backlog was last counted: at most once per `LAG_COUNT_EVERY` while it lasts.
        let mut counted: Option<std::time::Instant> = None;
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            if drained {
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    notification = listener.recv() => {
                        if let Err(error) = notification {
                            tracing::warn!(%error, "relay listener failed; polling until it reconnects");
                            tokio::time::sleep(self.poll_interval()).await;
                        }
                        if !linger.is_zero() {
                            tokio::time::sleep(linger).await;
                        }
                        // One query serves every notification that arrived meanwhile.
                        while listener.next_buffered().is_some() {}
                    }
                    () = tokio::time::sleep(self.poll_interval()) => {}
                }
                // A reconnection may be to a server that came back without its last messages.
                let now = self.nats.statistics().connects.load(Ordering::Relaxed);
                if now != connects {
                    connects = now;
                    self.verify_tail(&mut conn, &mut position).await?;
                }
            }
            let checkpoint = position.checkpoint;
            // ORDER BY names the table's columns: a bare `tx_id` would be the text output column
            // and sort "10000" before "9999", skipping every row of a backlog behind a power of
            // ten (found by the chaos test).
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT tx_id::text AS tx_id, global_position, event_id, aggregate_type, aggregate_id, \
                        sequence, event_type, event_version, payload, metadata, committed_at \
                 FROM events \
                 WHERE (tx_id, global_position) > ($1::text::xid8, $2) \
                   AND tx_id < public.events_horizon() \
                 ORDER BY events.tx_id, events.global_position \
                 LIMIT $3",
            )
            .bind(checkpoint.tx_id.to_string())
            .bind(checkpoint.global_position)
            .bind(batch_size)
            .fetch_all(&mut conn)
            .await
            .context("reading events to relay")?;

            if rows.is_empty() {
                metrics::gauge!("relay_lag_events", "stream" => stream.clone()).set(0.0);
                metrics::gauge!("relay_lag_seconds", "stream" => stream.clone()).set(0.0);
                drained = true;
                continue;
            }

            let oldest = rows[0].committed_at;
            metrics::gauge!("relay_lag_seconds", "stream" => stream.clone())
                .set((Utc::now() - oldest).to_std().unwrap_or_default().as_secs_f64());
            let started = std::time::Instant::now();
            let full = rows.len() as i64 == batch_size;
            // A short batch took everything readable: the next read waits for a commit.
            drained = !full;
            let published = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                published = self.publish(&rows, &mut position.acked_sequence) => published?,
            };
            let last = match published {
                Published::All(last) => last,
                Published::TailLost { kept } => {
                    self.rewind(&mut conn, &mut position, kept).await?;
                    drained = false;
                    continue;
                }
            };
            metrics::histogram!("relay_batch_publish_seconds", "stream" => stream.clone())
                .record(started.elapsed().as_secs_f64());

            position.checkpoint = last;
            save_position(&mut conn, &stream, position).await?;
            metrics::counter!("relay_events_published_total", "stream" => stream.clone())
                .increment(rows.len() as u64);
            if !full {
                metrics::gauge!("relay_lag_events", "stream" => stream.clone()).set(0.0);
            } else if counted.is_none_or(|at| at.elapsed() >= LAG_COUNT_EVERY) {
                counted = Some(std::time::Instant::now());
                let lag = count_behind(&mut conn, last).await?;
                metrics::gauge!("relay_lag_events", "stream" => stream.clone()).set(lag as f64);
            }
        }
    }

    /// Refills the stream when it holds fewer messages than it acknowledged (found when the
    /// relay starts and after every reconnection to NATS).
    async fn verify_tail(&self, conn: &mut PgConnection, position: &mut Position) -> anyhow::Result<()> {
        let last = tail::last_sequence(&self.jetstream, &self.config.nats.nats_stream).await?;
        if last < position.acked_sequence {
            self.rewind(conn, position, last).await?;
        }
        Ok(())
    }

    /// Moves the checkpoint to the event of the stream's message `kept` (the last one that
    /// survived a loss), so that everything after it is published again.
    async fn rewind(
        &self,
        conn: &mut PgConnection,
        position: &mut Position,
        kept: u64,
    ) -> anyhow::Result<()> {
        let stream = &self.config.nats.nats_stream;
        let from = tail::position_at(&self.jetstream, stream, conn, kept).await?;
        let last = tail::last_sequence(&self.jetstream, stream).await?;
        tracing::warn!(
            stream = %stream,
            acknowledged = position.acked_sequence,
            kept,
            from_global_position = from.global_position,
            "the stream lost messages it had acknowledged; publishing again from the last event it holds"
        );
        metrics::counter!("relay_stream_rewinds_total", "stream" => stream.clone()).increment(1);
        *position = Position {
            checkpoint: from,
            acked_sequence: last,
        };
        save_position(conn, stream, *position).await
    }

    /// Publishes `rows` in order with a bounded window of unacknowledged publishes; returns the
    /// position of the last row once every row was acknowledged, raising `acked` to the highest
    /// sequence acknowledged.
    async fn publish(&self, rows: &[Row], acked: &mut u64) -> anyhow::Result<Published> {
        let prefix = &self.config.nats.nats_subject_prefix;
        let window = self.config.args.relay_max_in_flight.max(1);
        let mut in_flight: VecDeque<PublishAckFuture> = VecDeque::with_capacity(window);
        let mut duplicates = 0_u64;
        // A new message acknowledged at a sequence already given out: the stream lost its tail.
        let mut lost = None;
        let mut settle = |ack: PublishAck| {
            if ack.duplicate {
                duplicates += 1;
            } else if ack.sequence <= *acked {
                lost.get_or_insert(ack.sequence);
            } else {
                *acked = ack.sequence;
            }
        };
        let mut last = None;
        for row in rows {
            let event = StoredEvent {
                event_id: row.event_id,
                global_position: row.global_position,
                aggregate_type: row.aggregate_type.clone(),
                aggregate_id: row.aggregate_id.clone(),
                sequence: row.sequence,
                event_type: row.event_type.clone(),
                event_version: row.event_version.clone(),
                payload: row.payload.clone(),
                metadata: row.metadata.clone(),
                committed_at: row.committed_at,
            };
            let subject = wire::subject(prefix, event.org_id(), &event.aggregate_type);
            let payload = serde_json::to_vec(&event).context("serializing an event for the stream")?;
            if in_flight.len() >= window {
                if let Some(ack) = in_flight.pop_front() {
                    settle(ack.await.context("JetStream ack")?);
                }
            }
            let ack = self
                .jetstream
                .send_publish(
                    subject,
                    PublishMessage::build()
                        .payload(payload.into())
                        .message_id(event.msg_id()),
                )
                .await
                .with_context(|| format!("publishing {}", event.msg_id()))?;
            in_flight.push_back(ack);
            let tx_id = row
                .tx_id
                .parse()
                .with_context(|| format!("bad tx_id {}", row.tx_id))?;
            last = Some(Checkpoint {
                tx_id,
                global_position: row.global_position,
            });
        }
        while let Some(ack) = in_flight.pop_front() {
            settle(ack.await.context("JetStream ack")?);
        }
        if let Some(sequence) = lost {
            return Ok(Published::TailLost { kept: sequence - 1 });
        }
        if duplicates > 0 {
            // Expected after a restart mid-batch: JetStream recognised the republished events.
            tracing::info!(
                duplicates,
                first = rows.first().map(|row| row.global_position),
                last = rows.last().map(|row| row.global_position),
                "JetStream dropped republished events as duplicates"
            );
            metrics::counter!("relay_duplicates_total", "stream" => self.config.nats.nats_stream.clone())
                .increment(duplicates);
        }
        match last {
            Some(last) => Ok(Published::All(last)),
            None => bail!("publish called with no rows"),
        }
    }
}

/// The stored position of the relay to `stream`, or the start of the log.
pub async fn load_position(conn: &mut PgConnection, stream: &str) -> anyhow::Result<Position> {
    let row: Option<(String, i64, i64)> = sqlx::query_as(
        "SELECT tx_id::text, global_position, stream_sequence FROM relay_checkpoints WHERE stream = $1",
    )
    .bind(stream)
    .fetch_optional(&mut *conn)
    .await
    .context("reading the relay checkpoint")?;
    Ok(match row {
        Some((tx_id, global_position, acked_sequence)) => Position {
            checkpoint: Checkpoint {
                tx_id: tx_id.parse().context("bad checkpoint tx_id")?,
                global_position,
            },
            acked_sequence: u64::try_from(acked_sequence).context("negative stream_sequence")?,
        },
        None => Position {
            checkpoint: Checkpoint::START,
            acked_sequence: 0,
        },
    })
}

async fn save_position(conn: &mut PgConnection, stream: &str, position: Position) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO relay_checkpoints (stream, tx_id, global_position, stream_sequence, updated_at) \
         VALUES ($1, $2::text::xid8, $3, $4, now()) \
         ON CONFLICT (stream) DO UPDATE \
             SET tx_id = EXCLUDED.tx_id, global_position = EXCLUDED.global_position, \
                 stream_sequence = EXCLUDED.stream_sequence, updated_at = now()",
    )
    .bind(stream)
    .bind(position.checkpoint.tx_id.to_string())
    .bind(position.checkpoint.global_position)
    .bind(i64::try_from(position.acked_sequence).context("stream sequence out of range")?)
    .execute(&mut *conn)
    .await
    .context("writing the relay checkpoint")?;
    Ok(())
}

/// How often a backlog is counted while the relay works through it.
const LAG_COUNT_EVERY: Duration = Duration::from_secs(1);
/// Where counting a backlog stops (`relay_lag_events` reads "at least" this much).
const LAG_COUNT_CAP: i64 = 10_000;

/// Committed events not yet relayed, up to [`LAG_COUNT_CAP`]. In the index's order: without
/// `ORDER BY`, the statement's generic plan put every index entry past the checkpoint into a
/// bitmap and rechecked the heap, about a second per count behind a million events (and it was
/// counted after every full batch).
async fn count_behind(conn: &mut PgConnection, checkpoint: Checkpoint) -> anyhow::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM events \
             WHERE (tx_id, global_position) > ($1::text::xid8, $2) \
               AND tx_id < public.events_horizon() \
             ORDER BY tx_id, global_position LIMIT $3) AS behind",
    )
    .bind(checkpoint.tx_id.to_string())
    .bind(checkpoint.global_position)
    .bind(LAG_COUNT_CAP)
    .fetch_one(&mut *conn)
    .await
    .context("measuring the relay lag")
}
