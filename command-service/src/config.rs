//! The one typed configuration of `command-service`, from flags and environment. Every flag is
//! global, so it may also follow the subcommand (`command-service serve --relay false`).

use std::num::NonZeroUsize;
use std::time::Duration;

use common::config::{DbArgs, ListenArgs, NatsArgs, SecretsArgs};

use crate::relay::RelayArgs;

/// Where the service listens unless `--listen`/`LISTEN_ADDR` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Configuration of the command API (and of the relay it runs).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub listen: ListenArgs,
    #[command(flatten)]
    pub relay: RelayArgs,
    #[command(flatten)]
    pub secrets: SecretsArgs,
    /// Run the relay to JetStream inside this process (`--relay false` when it runs elsewhere,
    /// e.g. `command-service relay`).
    #[arg(long = "relay", global = true, env = "RELAY_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub relay_enabled: bool,
    /// Apply pending database migrations at start.
    #[arg(long, global = true, env = "MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate: bool,
    /// Aggregates kept in the in-process cache (least recently used evicted).
    #[arg(long, global = true, env = "AGGREGATE_CACHE_SIZE", default_value_t = NonZeroUsize::new(10_000).expect("non-zero"))]
    pub aggregate_cache_size: NonZeroUsize,
    /// Attempts of a command whose optimistic lock keeps losing to other processes.
    #[arg(long, global = true, env = "COMMAND_MAX_ATTEMPTS", default_value_t = 10)]
    pub command_max_attempts: u32,
    /// Largest request body accepted, in bytes.
    #[arg(long, global = true, env = "MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// Most API requests worked on at once; beyond it a request is answered 503 `overloaded`
    /// with `Retry-After` at once instead of queueing (0: no bound). The default serves 32
    /// terminals without shedding on 2 cores (BENCHMARKS.md); it is a few times the database
    /// pool, so raise both together.
    #[arg(long, global = true, env = "MAX_IN_FLIGHT", default_value_t = 32)]
    pub max_in_flight: usize,
    /// The latency, in milliseconds, that accepted requests are kept near at p99: while
    /// requests take longer, fewer are worked on at once (down to 4) and more are shed; the
    /// bound climbs back to `MAX_IN_FLIGHT` when they are fast again (0: a fixed bound).
    #[arg(long, global = true, env = "SHED_LATENCY_TARGET_MS", default_value_t = 150)]
    pub shed_latency_target_ms: u64,
    /// Requests per second each API key may make (a burst of one second's worth); beyond it
    /// 429 `rate_limited` with `Retry-After` (0: no limit).
    #[arg(long, global = true, env = "RATE_LIMIT_PER_KEY", default_value_t = 0)]
    pub rate_limit_per_key: u32,
    /// Longest a request may take before it is answered 503 `timeout`, in seconds (0: no limit).
    /// A write keeps running to its end; a retry with its Idempotency-Key gets its answer.
    #[arg(long, global = true, env = "REQUEST_TIMEOUT_SECS", default_value_t = 0)]
    pub request_timeout_secs: u64,
    /// How long a request holds its Idempotency-Key unless renewed (every third of it while the
    /// command runs): a retry after a crash waits at most this long for the key to free.
    #[arg(long, global = true, env = "IDEMPOTENCY_LEASE_SECS", default_value_t = 3)]
    pub idempotency_lease_secs: u64,
    /// How long stored responses of completed requests are kept for replay.
    #[arg(
        long,
        global = true,
        env = "IDEMPOTENCY_RETENTION_HOURS",
        default_value_t = 168
    )]
    pub idempotency_retention_hours: u64,
    /// Statements appending events in flight at once; each takes every command waiting for it
    /// (group commit). One by default: a command waits at most for the statement running and
    /// then goes in the next, and the fewer the statements, the larger each batch and the less
    /// each command costs the database (BENCHMARKS.md, "Append workers").
    #[arg(long, global = true, env = "APPEND_WORKERS", default_value_t = 1)]
    pub append_workers: usize,
    /// Most commands appended by one statement (1: each command alone).
    #[arg(long, global = true, env = "APPEND_BATCH_MAX", default_value_t = 64)]
    pub append_batch_max: usize,
    /// Members processed concurrently by a system job.
    #[arg(long, global = true, env = "JOB_CONCURRENCY", default_value_t = 4)]
    pub job_concurrency: usize,
    /// How long graceful shutdown waits for running commands, in seconds.
    #[arg(long, global = true, env = "SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
}

impl Config {
    /// The defaults, pointed at `db` and `nats` (what tests and tools start from).
    pub fn new(db: DbArgs, nats: NatsArgs) -> Self {
        Self {
            db,
            nats,
            listen: ListenArgs::default(),
            relay: RelayArgs::default(),
            secrets: SecretsArgs::default(),
            relay_enabled: true,
            migrate: true,
            aggregate_cache_size: NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN),
            command_max_attempts: 10,
            max_body_bytes: 64 * 1024,
            max_in_flight: 32,
            shed_latency_target_ms: 150,
            rate_limit_per_key: 0,
            request_timeout_secs: 0,
            idempotency_lease_secs: 3,
            idempotency_retention_hours: 168,
            append_workers: 1,
            append_batch_max: 64,
            job_concurrency: 4,
            shutdown_grace_secs: 20,
        }
    }

    pub fn request_timeout(&self) -> Option<Duration> {
        (self.request_timeout_secs > 0).then(|| Duration::from_secs(self.request_timeout_secs))
    }

    pub fn idempotency_lease(&self) -> Duration {
        Duration::from_secs(self.idempotency_lease_secs.max(1))
    }

    pub fn idempotency_retention(&self) -> Duration {
        Duration::from_secs(self.idempotency_retention_hours.saturating_mul(3600))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn the_parsed_defaults_match_config_new() {
        let parsed = Cli::parse_from(["command-service"]).config;
        let built = Config::new(parsed.db.clone(), parsed.nats.clone());
        assert_eq!(format!("{parsed:?}"), format!("{built:?}"));
    }

    #[test]
    fn flags_override_defaults() {
        let parsed = Cli::parse_from([
            "command-service",
            "--relay",
            "false",
            "--max-body-bytes",
            "1024",
            "--relay-batch-size",
            "50",
        ])
        .config;
        assert!(!parsed.relay_enabled);
        assert_eq!(parsed.max_body_bytes, 1024);
        assert_eq!(parsed.relay.relay_batch_size, 50);
    }
}
