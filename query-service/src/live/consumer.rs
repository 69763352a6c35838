//! The JetStream consumer feeding the [`LiveFeed`]: where it starts, and how it comes back
//! after the stream or the connection failed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::stream::Stream as JetStream;
use backon::{ExponentialBuilder, Retryable as _};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::LiveFeed;

/// How long to wait before retrying to reach the stream: doubling from the first delay to the
/// longest, for as long as it takes.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);
const BACKOFF: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(RETRY_MIN)
    .with_max_delay(RETRY_MAX)
    .without_max_times();

/// Where the next consumer starts.
#[derive(Debug, Clone, Copy)]
enum Start {
    /// The stream did not exist at startup: everything it will hold is new.
    All,
    /// After this stream sequence (the last one at startup, or the last one handled).
    After(u64),
}

impl Start {
    fn policy(self) -> DeliverPolicy {
        match self {
            Start::All => DeliverPolicy::All,
            Start::After(sequence) => DeliverPolicy::ByStartSequence {
                start_sequence: sequence + 1,
            },
        }
    }
}

/// Fixes the starting point now and returns the task that feeds `feed` until `cancel`.
pub async fn start(
    feed: Arc<LiveFeed>,
    jetstream: async_nats::jetstream::Context,
    stream_name: String,
    subject_prefix: String,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let start = match jetstream.get_stream(&stream_name).await {
        Ok(stream) => Start::After(stream.cached_info().state.last_sequence),
        Err(error) => {
            tracing::info!(%error, stream = stream_name, "live feed: stream not there yet; will start at its beginning");
            Start::All
        }
    };
    tokio::spawn(async move {
        let consumer = Consumer {
            feed: &feed,
            jetstream: &jetstream,
            stream_name: &stream_name,
            filter: &format!("{subject_prefix}.*.member"),
            // Shared by the attempts of the retry below, each resuming where the last one stopped.
            start: Mutex::new(start),
        };
        consumer.run(&cancel).await;
        feed.close_all();
    })
}

/// A consumer that failed, and whether it had been running for a while.
struct Failure {
    error: anyhow::Error,
    ran_long: bool,
}

impl Failure {
    fn report(&self) {
        tracing::debug!(error = format!("{:#}", self.error), "live feed: (re)connecting");
        metrics::counter!("query_live_feed_restarts_total").increment(1);
    }
}

struct Consumer<'a> {
    feed: &'a LiveFeed,
    jetstream: &'a async_nats::jetstream::Context,
    stream_name: &'a str,
    filter: &'a str,
    start: Mutex<Start>,
}

impl Consumer<'_> {
    /// Consumes until `cancel`, retrying failures with [`BACKOFF`]. A consumer that ran for a
    /// while before it failed ends the round of retries: that is a new failure, not the same one
    /// again, so the next round starts from the shortest delay.
    async fn run(&self, cancel: &CancellationToken) {
        loop {
            let round = (|| self.attempt())
                .retry(BACKOFF)
                .sleep(tokio::time::sleep)
                .when(|failure| !failure.ran_long)
                .notify(|failure, _| failure.report());
            let outcome = tokio::select! {
                () = cancel.cancelled() => return,
                outcome = round => outcome,
            };
            match outcome {
                Ok(()) => return,
                Err(failure) => failure.report(),
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(RETRY_MIN) => {}
            }
        }
    }

    async fn attempt(&self) -> Result<(), Failure> {
        let began = tokio::time::Instant::now();
        self.consume().await.map_err(|error| Failure {
            error,
            ran_long: began.elapsed() > RETRY_MAX * 10,
        })
    }

    fn start(&self) -> Start {
        *self.start.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn resume_after(&self, stream_sequence: u64) {
        *self.start.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Start::After(stream_sequence);
    }

    /// Consumes until the stream fails (`Err`, to be retried from where it stopped); never ends
    /// otherwise: the caller stops it at cancellation.
    async fn consume(&self) -> anyhow::Result<()> {
        let stream: JetStream = self
            .jetstream
            .get_stream(self.stream_name)
            .await
            .with_context(|| format!("getting stream {}", self.stream_name))?;
        let start = self.start();
        let consumer = stream
            .create_consumer(OrderedConfig {
                description: Some("query-service live updates".to_owned()),
                filter_subject: self.filter.to_owned(),
                deliver_policy: start.policy(),
                ..Default::default()
            })
            .await
            .context("creating the ordered consumer")?;
        let mut messages = consumer.messages().await.context("consuming")?;
        tracing::info!(
            stream = self.stream_name,
            filter = self.filter,
            ?start,
            "live feed consuming"
        );
        loop {
            let Some(message) = messages.next().await else {
                anyhow::bail!("the consumer ended");
            };
            let message = message.context("receiving")?;
            self.feed.handle(&message.payload);
            if let Ok(info) = message.info() {
                self.resume_after(info.stream_sequence);
            }
        }
    }
}
