//! Argument groups every service flattens into its one typed config, and the connection
//! helpers that go with them. Each value can be given as a flag or through the environment
//! (flags win). The flags are global, so they may follow a subcommand
//! (`command-service migrate --database-url ...`).
//!
//! ```
//! use clap::Parser;
//!
//! #[derive(Debug, Parser)]
//! struct Config {
//!     #[command(flatten)]
//!     db: common::config::DbArgs,
//!     #[command(flatten)]
//!     nats: common::config::NatsArgs,
//!     #[command(flatten)]
//!     listen: common::config::ListenArgs,
//! }
//!
//! let config = Config::parse_from(["svc", "--listen", "127.0.0.1:0"]);
//! assert_eq!(config.listen.listen.as_deref(), Some("127.0.0.1:0"));
//! ```

use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::net::TcpListener;

/// `DATABASE_URL` unless configured otherwise: the database `scripts/services.sh` creates.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/loyalty";
/// `NATS_URL` unless configured otherwise.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// The JetStream stream the event store is relayed to.
pub const DEFAULT_NATS_STREAM: &str = "LOYALTY_EVENTS";
/// Events are published to `<prefix>.<org>.<aggregate>`.
pub const DEFAULT_NATS_SUBJECT_PREFIX: &str = "loyalty.events";

/// How to reach Postgres.
#[derive(Clone, clap::Args)]
pub struct DbArgs {
    /// Postgres connection URL.
    #[arg(long, global = true, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Upper bound of the connection pool.
    #[arg(long, global = true, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,
}

impl DbArgs {
    /// Arguments for `database_url` with the default pool size.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            database_max_connections: 10,
        }
    }
}

// The URL usually carries a password; keep it out of logs and panic messages.
impl fmt::Debug for DbArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbArgs")
            .field("database_url", &redact_url(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .finish()
    }
}

/// How to reach NATS, and where the event stream lives on it.
#[derive(Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL.
    #[arg(long, global = true, env = "NATS_URL", default_value = DEFAULT_NATS_URL)]
    pub nats_url: String,
    /// Name of the JetStream stream that carries the events.
    #[arg(long, global = true, env = "NATS_STREAM", default_value = DEFAULT_NATS_STREAM)]
    pub nats_stream: String,
    /// Subject prefix of the events: `<prefix>.<org>.<aggregate>`.
    #[arg(long, global = true, env = "NATS_SUBJECT_PREFIX", default_value = DEFAULT_NATS_SUBJECT_PREFIX)]
    pub nats_subject_prefix: String,
}

impl Default for NatsArgs {
    fn default() -> Self {
        Self {
            nats_url: DEFAULT_NATS_URL.to_owned(),
            nats_stream: DEFAULT_NATS_STREAM.to_owned(),
            nats_subject_prefix: DEFAULT_NATS_SUBJECT_PREFIX.to_owned(),
        }
    }
}

impl fmt::Debug for NatsArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsArgs")
            .field("nats_url", &redact_url(&self.nats_url))
            .field("nats_stream", &self.nats_stream)
            .field("nats_subject_prefix", &self.nats_subject_prefix)
            .finish()
    }
}

/// The server-side key signing secrets are derived with (see [`crate::signing_secrets`]).
/// Every service that creates or verifies secrets needs the same one.
#[derive(Clone, Default, clap::Args)]
pub struct SecretsArgs {
    /// Key mixed into every signing secret of customer tokens, kept outside the database so
    /// that a database dump alone does not give the secrets. The same value for every service;
    /// changing it invalidates every secret. Unset: secrets follow from the database (a
    /// warning is logged).
    #[arg(long, global = true, env = "SECRETS_PEPPER", hide_env_values = true)]
    pub secrets_pepper: Option<String>,
}

impl SecretsArgs {
    /// The pepper, with a warning when none is configured.
    pub fn pepper(&self) -> crate::signing_secrets::Pepper {
        let pepper = crate::signing_secrets::Pepper::new(self.secrets_pepper.as_deref());
        if !pepper.is_set() {
            tracing::warn!(
                "SECRETS_PEPPER is not set: signing secrets can be derived from the database alone"
            );
        }
        pepper
    }
}

impl fmt::Debug for SecretsArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsArgs")
            .field("secrets_pepper", &self.secrets_pepper.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Where a service listens for HTTP.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ListenArgs {
    /// Address to listen on (`host:port`; port 0 picks a free one). Each service has its own
    /// default port, see [`ListenArgs::bind`].
    #[arg(long, global = true, env = "LISTEN_ADDR")]
    pub listen: Option<String>,
}

impl ListenArgs {
    /// The configured address, or `default` when none was given.
    pub fn addr_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.listen.as_deref().unwrap_or(default)
    }

    /// Binds the configured address (or `default`).
    pub async fn bind(&self, default: &str) -> anyhow::Result<TcpListener> {
        let addr = self.addr_or(default);
        TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))
    }
}

/// Opens a Postgres pool and checks that a connection can be made.
pub async fn connect_db(args: &DbArgs) -> anyhow::Result<PgPool> {
    connect_db_with(args, &[]).await
}

/// Like [`connect_db`], with run-time settings (`SET name = value`) on every connection.
pub async fn connect_db_with(args: &DbArgs, settings: &[(&str, &str)]) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = args
        .database_url
        .parse()
        .with_context(|| format!("bad database URL {}", redact_url(&args.database_url)))?;
    PgPoolOptions::new()
        .max_connections(args.database_max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options.options(settings.iter().copied()))
        .await
        .with_context(|| format!("cannot connect to Postgres at {}", redact_url(&args.database_url)))
}

/// The `application_name` of the projector's sessions. The relay does not wait for their
/// transactions (`events_horizon()`, migration 0016), so a trigger refuses their inserts into
/// `events`: only a process that never writes events may use it.
pub const READ_SIDE: (&str, &str) = ("application_name", "loyalty-projector");

/// Plan each prepared statement once per connection. The read paths run the same few
/// statements over and over with array parameters, for which Postgres otherwise keeps
/// re-planning (a custom plan per execution): measured, planning the storefront member query's
/// statements cost more database CPU than running them.
pub const GENERIC_PLANS: (&str, &str) = ("plan_cache_mode", "force_generic_plan");

/// Connects to NATS; fails if the server cannot be reached now (it reconnects later by itself).
pub async fn connect_nats(args: &NatsArgs) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(args.nats_url.as_str())
        .await
        .with_context(|| format!("cannot connect to NATS at {}", redact_url(&args.nats_url)))
}

/// `url` with its password, if any, replaced by `***` (unparseable input is hidden entirely).
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Cannot fail: a URL with a password has a host.
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<unparseable url>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Config {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        listen: ListenArgs,
    }

    #[test]
    fn flags_are_parsed_and_listen_falls_back_to_the_service_default() {
        let config = Config::parse_from([
            "svc",
            "--database-url",
            "postgres://u:secret@db:5432/x",
            "--nats-url",
            "nats://n:4222",
            "--nats-stream",
            "S",
            "--nats-subject-prefix",
            "p.events",
        ]);
        assert_eq!(config.db.database_url, "postgres://u:secret@db:5432/x");
        assert_eq!(config.nats.nats_url, "nats://n:4222");
        assert_eq!(config.nats.nats_stream, "S");
        assert_eq!(config.nats.nats_subject_prefix, "p.events");
        assert_eq!(config.listen.addr_or("127.0.0.1:8080"), "127.0.0.1:8080");
    }

    #[test]
    fn debug_output_hides_the_database_password() {
        let args = DbArgs::new("postgres://postgres:hunter2@127.0.0.1:5432/loyalty");
        let shown = format!("{args:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://postgres:***@127.0.0.1:5432/loyalty"),
            "{shown}"
        );
        assert_eq!(redact_url("not a url"), "<unparseable url>");
        assert_eq!(redact_url(DEFAULT_NATS_URL), "nats://127.0.0.1:4222");
    }
}
