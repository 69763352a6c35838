//! The live consumer: a durable JetStream pull consumer acked cumulatively (`AckPolicy::All`).
//!
//! Messages are pulled continuously and grouped into batches (up to `batch_size` of those
//! waiting, optionally lingering for more); a batch is applied (`Projector::process`: two
//! parts, one transaction each) and, only after it committed, its highest stream sequence is
//! acked, which acks everything delivered before it: one ack per batch instead of one per
//! event, the message the server and this process handled most after the events themselves. A
//! crash before the commit loses nothing (the messages are redelivered after `ack_wait`); a
//! crash between commit and ack redelivers messages that the checkpoints then skip.
//!
//! A cumulative ack must never cover a message that was not applied, so a batch that fails is
//! not nak'ed message by message (a later batch's ack would cover those naks before their
//! redelivery): after a pause the consumer is re-created past its ack floor, and everything
//! after the floor is delivered again in order. A consumer created with explicit acks (before
//! this mode) is re-created the same way at start-up.
//!
//! Messages delivered to a projector that died (or lost in a NATS restart before they reached
//! it) wait for an ack that nobody will send; the server would redeliver them only after
//! `ack_wait`, and members with no later event would keep a stale read model until then. So the
//! consumer does not wait: at start-up, and whenever its ack floor has not moved for
//! [`STUCK_AFTER`] while messages wait for an ack, it is re-created starting just past the ack
//! floor (every message after it is delivered again; those already applied are skipped by the
//! per-aggregate checkpoints). This is sound only because a consumer name belongs to one
//! projector process: two processes sharing a name would re-create it under each other, and
//! their batches could race on a checkpoint. Run one projector per consumer name.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::Message;
use async_nats::jetstream::{self, stream};
use chrono::Utc;
use common::config::NatsArgs;
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::batch::{BatchReport, Projector};
use crate::event::Incoming;

/// How the consumer is set up.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub nats: NatsArgs,
    /// Durable consumer name.
    pub name: String,
    pub batch_size: usize,
    /// How long a batch waits for more messages after its first one.
    pub linger: Duration,
    /// How long the server waits for an ack before redelivering.
    pub ack_wait: Duration,
}

/// How often the consumer's pending count is refreshed for the lag gauge.
const PENDING_REFRESH: Duration = Duration::from_secs(1);
/// Pause after a failed batch before it is delivered again.
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// How long the ack floor may stand still, with messages waiting for an ack, before those
/// messages are taken for lost and the consumer is re-created past the floor. Longer than a
/// failed batch's [`RETRY_DELAY`] plus a batch; a wrong guess only redelivers a few messages.
const STUCK_AFTER: Duration = Duration::from_secs(3);

/// The stream of the event store, as the relay (`command_service::relay`) creates it: every
/// subject under the prefix, on disk, with the relay's default ten-minute duplicate window for
/// `Nats-Msg-Id`. Whoever starts first creates it; the other finds it.
pub fn stream_config(nats: &NatsArgs) -> stream::Config {
    stream::Config {
        name: nats.nats_stream.clone(),
        subjects: vec![domain::wire::all_subjects(&nats.nats_subject_prefix)],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        duplicate_window: Duration::from_secs(600),
        ..Default::default()
    }
}

/// The durable consumer's configuration, delivering from `deliver_policy`.
fn consumer_config(settings: &ConsumerSettings, deliver_policy: DeliverPolicy) -> PullConfig {
    // One subject filter per consumer: nats-server 2.9 ignores `filter_subjects`.
    PullConfig {
        durable_name: Some(settings.name.clone()),
        description: Some("loyalty projector: read models".to_owned()),
        deliver_policy,
        ack_policy: AckPolicy::All,
        ack_wait: settings.ack_wait,
        filter_subject: domain::wire::all_subjects(&settings.nats.nats_subject_prefix),
        max_ack_pending: i64::try_from(settings.batch_size.saturating_mul(4)).unwrap_or(i64::MAX),
        ..Default::default()
    }
}

/// Gets (or creates) the stream and the durable consumer; a consumer left with messages waiting
/// for an ack (a projector died holding them) is re-created past its ack floor (module docs).
pub async fn consumer(
    client: &async_nats::Client,
    settings: &ConsumerSettings,
) -> anyhow::Result<PullConsumer> {
    let context = jetstream::new(client.clone());
    let stream = context
        .get_or_create_stream(stream_config(&settings.nats))
        .await
        .with_context(|| format!("getting or creating stream {}", settings.nats.nats_stream))?;
    let consumer: PullConsumer = stream
        .get_or_create_consumer(&settings.name, consumer_config(settings, DeliverPolicy::All))
        .await
        .with_context(|| format!("getting or creating consumer {}", settings.name))?;
    let info = consumer.cached_info();
    let ack_floor = info.ack_floor.stream_sequence;
    if info.config.ack_policy != AckPolicy::All {
        // The ack policy of a consumer cannot be updated: a consumer of an earlier version is
        // replaced, losing nothing past its ack floor.
        tracing::info!(
            consumer = %settings.name,
            ack_floor,
            "re-creating the consumer with cumulative acks, delivering again past its ack floor"
        );
        return restart_past(&stream, settings, ack_floor).await;
    }
    if info.num_ack_pending == 0 {
        return Ok(consumer);
    }
    tracing::info!(
        consumer = %settings.name,
        ack_pending = info.num_ack_pending,
        ack_floor,
        "messages delivered before this start wait for an ack: delivering again past the ack floor"
    );
    restart_past(&stream, settings, ack_floor).await
}

/// Deletes the durable consumer and creates it again, delivering from stream sequence
/// `ack_floor + 1`.
async fn restart_past(
    stream: &stream::Stream,
    settings: &ConsumerSettings,
    ack_floor: u64,
) -> anyhow::Result<PullConsumer> {
    let deliver_policy = match ack_floor {
        0 => DeliverPolicy::All,
        floor => DeliverPolicy::ByStartSequence {
            start_sequence: floor + 1,
        },
    };
    stream
        .delete_consumer(&settings.name)
        .await
        .with_context(|| format!("deleting consumer {}", settings.name))?;
    metrics::counter!("projector_consumer_restarts_total").increment(1);
    stream
        .create_consumer(consumer_config(settings, deliver_policy))
        .await
        .with_context(|| format!("creating consumer {} again", settings.name))
}

/// Watches the consumer's ack floor for messages nobody will ack (module docs).
struct FloorWatch {
    floor: u64,
    since: Instant,
}

impl FloorWatch {
    fn new() -> Self {
        Self {
            floor: 0,
            since: Instant::now(),
        }
    }

    /// The ack floor to restart past, when it stood still for [`STUCK_AFTER`] with messages
    /// waiting for an ack.
    fn stuck(&mut self, info: &async_nats::jetstream::consumer::Info) -> Option<u64> {
        let floor = info.ack_floor.stream_sequence;
        if floor != self.floor || info.num_ack_pending == 0 {
            self.floor = floor;
            self.since = Instant::now();
            return None;
        }
        (self.since.elapsed() >= STUCK_AFTER).then_some(floor)
    }
}

/// Consumes until `shutdown` is cancelled; the batch in progress is finished first.
pub async fn consume(
    client: async_nats::Client,
    settings: ConsumerSettings,
    projector: Projector,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut consumer = consumer(&client, &settings).await?;
    let stream_name = settings.nats.nats_stream.clone();
    let stream = jetstream::new(client.clone())
        .get_stream(&stream_name)
        .await
        .with_context(|| format!("getting stream {stream_name}"))?;
    let mut watch = FloorWatch::new();
    let mut refresh = tokio::time::interval(PENDING_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'reconnect: loop {
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(settings.batch_size)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .context("starting to pull messages")?;
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => break 'reconnect,
                next = messages.next() => next,
                _ = refresh.tick() => {
                    // Also while idle: lost messages may be what keeps the consumer idle (they
                    // count against max_ack_pending).
                    let info = match consumer.info().await {
                        Ok(info) => info.clone(),
                        Err(error) => {
                            tracing::warn!(%error, "cannot read the consumer's info");
                            continue;
                        }
                    };
                    metrics::gauge!("projector_consumer_pending_messages").set(info.num_pending as f64);
                    metrics::gauge!("projector_consumer_ack_pending_messages")
                        .set(info.num_ack_pending as f64);
                    let Some(floor) = watch.stuck(&info) else { continue };
                    tracing::warn!(
                        consumer = %settings.name,
                        ack_pending = info.num_ack_pending,
                        ack_floor = floor,
                        "messages wait for an ack nobody will send: delivering again past the ack floor"
                    );
                    match restart_past(&stream, &settings, floor).await {
                        Ok(restarted) => {
                            consumer = restarted;
                            watch = FloorWatch::new();
                            continue 'reconnect;
                        }
                        Err(error) => {
                            tracing::warn!(error = format!("{error:#}"), "cannot re-create the consumer");
                            continue;
                        }
                    }
                }
            };
            let mut batch = match first {
                Some(Ok(message)) => vec![message],
                Some(Err(error)) => {
                    tracing::warn!(%error, "pulling messages failed");
                    continue;
                }
                None => {
                    tracing::warn!("message stream ended: pulling again");
                    continue 'reconnect;
                }
            };
            let deadline = tokio::time::Instant::now() + settings.linger;
            while batch.len() < settings.batch_size {
                match tokio::time::timeout_at(deadline, messages.next()).await {
                    Ok(Some(Ok(message))) => batch.push(message),
                    Ok(Some(Err(error))) => {
                        tracing::warn!(%error, "pulling messages failed");
                        break;
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            if !handle_batch(&projector, &stream_name, batch).await {
                // Module docs: nothing may be acked before the failed batch is delivered again.
                match redeliver_past_floor(&consumer, &stream, &settings, &shutdown).await {
                    Some(restarted) => {
                        consumer = restarted;
                        watch = FloorWatch::new();
                        continue 'reconnect;
                    }
                    None => break 'reconnect,
                }
            }
        }
    }
    tracing::info!(consumer = %settings.name, "consumer stopped");
    Ok(())
}

/// After a failed batch: pauses, then re-creates the consumer past its ack floor, trying until
/// it succeeds; `None` when shut down first.
async fn redeliver_past_floor(
    consumer: &PullConsumer,
    stream: &stream::Stream,
    settings: &ConsumerSettings,
    shutdown: &CancellationToken,
) -> Option<PullConsumer> {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(RETRY_DELAY) => {}
        }
        let restarted = match consumer.get_info().await {
            Ok(info) => restart_past(stream, settings, info.ack_floor.stream_sequence).await,
            Err(error) => Err(anyhow::Error::new(error).context("reading the consumer's info")),
        };
        match restarted {
            Ok(restarted) => return Some(restarted),
            Err(error) => tracing::warn!(
                error = format!("{error:#}"),
                "cannot re-create the consumer after a failed batch: trying again"
            ),
        }
    }
}

/// Applies a batch and acks it; `false` when it failed (nothing of it is acked).
async fn handle_batch(projector: &Projector, stream: &str, batch: Vec<Message>) -> bool {
    let started = Instant::now();
    let sequences: Vec<u64> = batch
        .iter()
        .map(|m| m.info().map(|i| i.stream_sequence).unwrap_or(0))
        .collect();
    let incoming: Vec<Incoming> = batch
        .iter()
        .zip(&sequences)
        .map(|(m, &sequence)| Incoming::from_message(stream, sequence, &m.payload))
        .collect();
    let result = projector
        .process(incoming)
        .instrument(tracing::info_span!("batch", size = batch.len()))
        .await;
    match result {
        Ok(report) => {
            // A redelivered message may come after later ones: the highest sequence acks them all.
            let last = sequences
                .iter()
                .zip(&batch)
                .max_by_key(|(sequence, _)| **sequence)
                .map(|(_, message)| message);
            if let Some(last) = last {
                if let Err(error) = last.ack().await {
                    // The batch is committed: a redelivery will be skipped by the checkpoints.
                    tracing::warn!(%error, "ack failed");
                }
            }
            record(&report, started.elapsed());
            true
        }
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                size = batch.len(),
                "batch failed: will be delivered again"
            );
            metrics::counter!("projector_batch_failures_total").increment(1);
            false
        }
    }
}

fn record(report: &BatchReport, elapsed: Duration) {
    metrics::histogram!("projector_batch_size").record(report.received as f64);
    metrics::histogram!("projector_batch_seconds").record(elapsed.as_secs_f64());
    metrics::counter!("projector_events_received_total").increment(report.received as u64);
    metrics::counter!("projector_events_duplicate_total").increment(report.duplicates as u64);
    metrics::counter!("projector_events_gap_filled_total").increment(report.gap_filled as u64);
    metrics::counter!("projector_events_parked_total").increment(report.parked as u64);
    for (model, n) in &report.read_models {
        metrics::counter!("projector_events_applied_total", "read_model" => model.as_str()).increment(*n);
    }
    let now = Utc::now();
    for committed_at in &report.committed_at {
        let lag = (now - *committed_at).to_std().unwrap_or_default();
        metrics::histogram!("projector_event_lag_seconds").record(lag.as_secs_f64());
    }
    if report.parked > 0 {
        tracing::warn!(parked = report.parked, "events parked in this batch");
    }
    tracing::debug!(
        received = report.received,
        applied = report.applied,
        duplicates = report.duplicates,
        gap_filled = report.gap_filled,
        "batch applied"
    );
}
