//! The live consumer: a durable JetStream pull consumer with explicit acks.
//!
//! Messages are pulled continuously and grouped into batches (up to `batch_size`, or whatever
//! arrived within a few milliseconds of the first); a batch is applied in one Postgres
//! transaction and acked only after it committed. A crash before the commit loses nothing
//! (the messages are redelivered after `ack_wait`); a crash between commit and ack redelivers
//! messages that the checkpoints then skip. A batch that fails for a reason worth retrying is
//! nak'ed with a delay.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::Message;
use async_nats::jetstream::{self, stream, AckKind};
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
    /// How long the server waits for an ack before redelivering.
    pub ack_wait: Duration,
}

/// How long a batch waits for more messages after its first one.
const LINGER: Duration = Duration::from_millis(20);
/// How often the consumer's pending count is refreshed for the lag gauge.
const PENDING_REFRESH: Duration = Duration::from_secs(1);
/// Delay of a redelivery after a failed batch.
const RETRY_DELAY: Duration = Duration::from_secs(1);

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

/// Gets (or creates) the stream and the durable consumer.
pub async fn consumer(
    client: &async_nats::Client,
    settings: &ConsumerSettings,
) -> anyhow::Result<PullConsumer> {
    let context = jetstream::new(client.clone());
    let stream = context
        .get_or_create_stream(stream_config(&settings.nats))
        .await
        .with_context(|| format!("getting or creating stream {}", settings.nats.nats_stream))?;
    // One subject filter per consumer: nats-server 2.9 ignores `filter_subjects`.
    let config = PullConfig {
        durable_name: Some(settings.name.clone()),
        description: Some("loyalty projector: read models".to_owned()),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: settings.ack_wait,
        filter_subject: domain::wire::all_subjects(&settings.nats.nats_subject_prefix),
        max_ack_pending: i64::try_from(settings.batch_size.saturating_mul(4)).unwrap_or(i64::MAX),
        ..Default::default()
    };
    stream
        .get_or_create_consumer(&settings.name, config)
        .await
        .with_context(|| format!("getting or creating consumer {}", settings.name))
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
    let mut last_pending = Instant::now() - PENDING_REFRESH;
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
            let deadline = tokio::time::Instant::now() + LINGER;
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
            handle_batch(&projector, &stream_name, batch).await;
            if last_pending.elapsed() >= PENDING_REFRESH {
                last_pending = Instant::now();
                match consumer.info().await {
                    Ok(info) => {
                        metrics::gauge!("projector_consumer_pending_messages").set(info.num_pending as f64);
                        metrics::gauge!("projector_consumer_ack_pending_messages")
                            .set(info.num_ack_pending as f64);
                    }
                    Err(error) => tracing::warn!(%error, "cannot read the consumer's info"),
                }
            }
        }
    }
    tracing::info!(consumer = %settings.name, "consumer stopped");
    Ok(())
}

async fn handle_batch(projector: &Projector, stream: &str, batch: Vec<Message>) {
    let started = Instant::now();
    let incoming: Vec<Incoming> = batch
        .iter()
        .map(|m| {
            let sequence = m.info().map(|i| i.stream_sequence).unwrap_or(0);
            Incoming::from_message(stream, sequence, &m.payload)
        })
        .collect();
    let result = projector
        .process(&incoming)
        .instrument(tracing::info_span!("batch", size = batch.len()))
        .await;
    match result {
        Ok(report) => {
            for message in &batch {
                if let Err(error) = message.ack().await {
                    // The batch is committed: a redelivery will be skipped by the checkpoints.
                    tracing::warn!(%error, "ack failed");
                }
            }
            record(&report, started.elapsed());
        }
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                size = batch.len(),
                "batch failed: will be redelivered"
            );
            metrics::counter!("projector_batch_failures_total").increment(1);
            for message in &batch {
                if let Err(error) = message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await {
                    tracing::warn!(%error, "nak failed");
                }
            }
            tokio::time::sleep(RETRY_DELAY).await;
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
