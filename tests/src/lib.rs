//! The shared integration harness of the platform (crate `loyalty-tests`).
//!
//! Integration tests run against the real Postgres and NATS servers (see
//! `scripts/services.sh`); they are shared by every test and every engineer, so each test gets
//! its own resources and removes them afterwards:
//!
//! - [`TestDb`]: a fresh, uniquely named database with every migration applied.
//! - [`TestNats`]: a unique JetStream stream name and subject prefix.
//!
//! Both clean up on [`TestDb::cleanup`] / [`TestNats::cleanup`], and on drop as a fallback, so a
//! test that panics leaves nothing behind either.
//!
//! ```no_run
//! # async fn demo() {
//! let db = loyalty_tests::TestDb::new().await;
//! let nats = loyalty_tests::TestNats::new().await;
//! // ... start services with db.db_args() and nats.nats_args(), exercise them ...
//! nats.cleanup().await;
//! db.cleanup().await;
//! # }
//! ```
//!
//! Environment: `TEST_DATABASE_ADMIN_URL` (a role that may create databases; default
//! [`DEFAULT_ADMIN_URL`]) and `NATS_URL` (default [`common::config::DEFAULT_NATS_URL`]).

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use common::config::{DbArgs, NatsArgs};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection as _, PgConnection, PgPool};
use uuid::Uuid;

/// The maintenance database used to create and drop test databases.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/postgres";

/// Pool size of a test database: tests run in parallel against one shared server, so keep it
/// small enough that `max_connections` (100 by default) is never the limit.
const TEST_POOL_SIZE: u32 = 5;

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_ADMIN_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| common::config::DEFAULT_NATS_URL.to_owned())
}

/// A fresh database, migrated, dropped at the end of the test.
pub struct TestDb {
    name: String,
    url: String,
    admin_url: String,
    pool: PgPool,
    dropped: bool,
}

impl TestDb {
    /// Creates `loyalty_test_<uuid>` on the test server and applies every migration.
    ///
    /// Panics with the reason when the server cannot be reached (run `scripts/services.sh`).
    pub async fn new() -> Self {
        common::telemetry::init_for_tests();
        Self::try_new(true)
            .await
            .unwrap_or_else(|error| panic!("cannot set up a test database: {error:#}"))
    }

    /// Creates `loyalty_test_<uuid>` without migrating it: for tests of a migration on data
    /// written in an earlier shape.
    pub async fn unmigrated() -> Self {
        common::telemetry::init_for_tests();
        Self::try_new(false)
            .await
            .unwrap_or_else(|error| panic!("cannot set up a test database: {error:#}"))
    }

    async fn try_new(migrate: bool) -> anyhow::Result<Self> {
        let admin_url = admin_url();
        let name = format!("loyalty_test_{}", Uuid::new_v4().simple());
        let url = database_url(&admin_url, &name)?;
        let redacted = common::config::redact_url(&admin_url);
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .with_context(|| format!("connecting to {redacted} (is Postgres up? scripts/services.sh)"))?;
        sqlx::query(&format!(r#"CREATE DATABASE "{name}""#))
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating database {name}"))?;
        admin.close().await.ok();
        // From here on `db` owns the database and drops it even if migrating fails.
        let pool = PgPoolOptions::new()
            .max_connections(TEST_POOL_SIZE)
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy(&url)
            .with_context(|| format!("bad test database URL for {name}"))?;
        let db = Self {
            name,
            url,
            admin_url,
            pool,
            dropped: false,
        };
        if migrate {
            schema::migrate(&db.pool)
                .await
                .with_context(|| format!("migrating {}", db.name))?;
        }
        Ok(db)
    }

    /// The pool of the test database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The URL of the test database (what a service gets as `DATABASE_URL`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database name, `loyalty_test_<uuid>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `DbArgs` pointing at the test database, for starting a service.
    pub fn db_args(&self) -> DbArgs {
        DbArgs {
            database_url: self.url.clone(),
            database_max_connections: TEST_POOL_SIZE,
        }
    }

    /// Closes the pool and drops the database (terminating any connection still open to it).
    pub async fn cleanup(mut self) {
        self.pool.close().await;
        if let Err(error) = drop_database(&self.admin_url, &self.name).await {
            panic!("cannot drop test database {}: {error:#}", self.name);
        }
        self.dropped = true;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Drop cannot await, and the test's runtime may be the one being torn down: do the
        // async cleanup on a thread with its own runtime, and wait for it so the database is
        // gone before the test process can exit.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(drop_database(&admin_url, &name))
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("warning: test database {} not dropped: {error:#}", self.name),
            Err(_) => eprintln!(
                "warning: test database {} not dropped: cleanup panicked",
                self.name
            ),
        }
    }
}

async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(admin_url)
        .await
        .context("connecting to the admin database")?;
    sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
        .execute(&mut admin)
        .await
        .with_context(|| format!("dropping database {name}"))?;
    admin.close().await.ok();
    Ok(())
}

/// `admin_url` with its database replaced by `database`.
fn database_url(admin_url: &str, database: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(admin_url).context("TEST_DATABASE_ADMIN_URL is not a URL")?;
    url.set_path(database);
    Ok(url.to_string())
}

/// A unique JetStream stream name and subject prefix for one test.
///
/// The stream itself is created by whoever publishes (the relay), or by the test through
/// [`TestNats::jetstream`]; the harness deletes it at the end either way.
pub struct TestNats {
    url: String,
    stream: String,
    subject_prefix: String,
    client: async_nats::Client,
    jetstream: jetstream::Context,
    deleted: bool,
}

impl TestNats {
    /// Connects to the test NATS server and picks names `T_<uuid>` / `t<uuid>.events`.
    ///
    /// Panics with the reason when the server cannot be reached (run `scripts/services.sh`).
    pub async fn new() -> Self {
        common::telemetry::init_for_tests();
        let url = nats_url();
        let client = async_nats::connect(url.as_str())
            .await
            .unwrap_or_else(|error| panic!("cannot connect to NATS at {url} (scripts/services.sh): {error}"));
        let id = Uuid::new_v4().simple();
        Self {
            stream: format!("T_{id}"),
            subject_prefix: format!("t{id}.events"),
            jetstream: jetstream::new(client.clone()),
            client,
            url,
            deleted: false,
        }
    }

    /// The NATS URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// This test's stream name, `T_<uuid>`.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// This test's subject prefix, `t<uuid>.events`.
    pub fn subject_prefix(&self) -> &str {
        &self.subject_prefix
    }

    /// A plain NATS client of the test.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// A JetStream context of the test.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// `NatsArgs` for starting a service on this test's stream and prefix.
    pub fn nats_args(&self) -> NatsArgs {
        NatsArgs {
            nats_url: self.url.clone(),
            nats_stream: self.stream.clone(),
            nats_subject_prefix: self.subject_prefix.clone(),
        }
    }

    /// Whether this test's stream exists on the server.
    pub async fn stream_exists(&self) -> bool {
        self.jetstream.get_stream(&self.stream).await.is_ok()
    }

    /// Deletes this test's stream (and with it its consumers), if it was created.
    pub async fn cleanup(mut self) {
        if let Err(error) = delete_stream(&self.jetstream, &self.stream).await {
            panic!("cannot delete test stream {}: {error:#}", self.stream);
        }
        self.deleted = true;
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        // Same reasoning as TestDb: a fresh runtime and connection on their own thread.
        let (url, stream) = (self.url.clone(), self.stream.clone());
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let client = async_nats::connect(url.as_str()).await?;
                delete_stream(&jetstream::new(client), &stream).await
            })
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("warning: test stream {} not deleted: {error:#}", self.stream),
            Err(_) => eprintln!(
                "warning: test stream {} not deleted: cleanup panicked",
                self.stream
            ),
        }
    }
}

async fn delete_stream(jetstream: &jetstream::Context, stream: &str) -> anyhow::Result<()> {
    use async_nats::jetstream::context::DeleteStreamErrorKind;
    use async_nats::jetstream::ErrorCode;
    match jetstream.delete_stream(stream).await {
        Ok(_) => Ok(()),
        Err(error) => match error.kind() {
            DeleteStreamErrorKind::JetStream(js) if js.error_code() == ErrorCode::STREAM_NOT_FOUND => Ok(()),
            _ => Err(error).with_context(|| format!("deleting stream {stream}")),
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_is_replaced_in_the_admin_url() {
        assert_eq!(
            super::database_url("postgres://u:p@h:5432/postgres?sslmode=disable", "x").unwrap(),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            super::database_url("postgres://h", "x").unwrap(),
            "postgres://h/x"
        );
    }
}

// --- The query service (GraphQL) -----------------------------------------------------------

/// The `SECRETS_PEPPER` of every service a test starts.
pub const TEST_PEPPER: &str = "test-pepper-not-for-production";

/// A query service running inside the test process, on a free port.
pub struct TestQueryService {
    addr: std::net::SocketAddr,
    http: reqwest::Client,
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts the query service on `db` and `nats` (port 0) with the default limits.
pub async fn spawn_query_service(db: &TestDb, nats: &TestNats) -> TestQueryService {
    spawn_query_service_with(db, nats, query_service::Limits::default()).await
}

/// Starts the query service with the given query limits.
pub async fn spawn_query_service_with(
    db: &TestDb,
    nats: &TestNats,
    limits: query_service::Limits,
) -> TestQueryService {
    let mut config = query_config(db, nats);
    config.limits = limits;
    spawn_query_service_config(config).await
}

/// The query service configuration of a test: `db`, `nats`, the test pepper; `redeemReward`
/// reaches no command API until `command_api_url` is set (see
/// [`TestCommandService::base_url`]).
pub fn query_config(db: &TestDb, nats: &TestNats) -> query_service::Config {
    let mut config = query_service::Config::new(db.db_args(), nats.nats_args());
    config.secrets.secrets_pepper = Some(TEST_PEPPER.to_owned());
    config.command_api_url = "http://127.0.0.1:9".to_owned();
    config
}

/// Starts the query service with `config` on `127.0.0.1:0`.
pub async fn spawn_query_service_config(config: query_service::Config) -> TestQueryService {
    common::telemetry::init("tests");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a port for the query service");
    let addr = listener.local_addr().expect("query service address");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(query_service::run(config, listener, async move {
        stop.cancelled().await
    }));
    TestQueryService {
        addr,
        http: reqwest::Client::new(),
        shutdown,
        task,
    }
}

/// A GraphQL answer: the HTTP status and the JSON body.
#[derive(Debug, Clone)]
pub struct GraphqlReply {
    pub status: reqwest::StatusCode,
    pub body: serde_json::Value,
}

impl GraphqlReply {
    /// `data`, panicking with the whole reply if there are errors.
    pub fn data(&self) -> &serde_json::Value {
        assert!(
            self.status.is_success() && self.body.get("errors").is_none_or(|errors| errors.is_null()),
            "GraphQL request failed: {} {:#}",
            self.status,
            self.body
        );
        &self.body["data"]
    }

    /// `extensions.code` of each error.
    pub fn error_codes(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| e["extensions"]["code"].as_str().unwrap_or("<none>").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The message of the first error, if any.
    pub fn first_error(&self) -> Option<&str> {
        self.body["errors"][0]["message"].as_str()
    }
}

impl TestQueryService {
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The websocket URL of subscriptions.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/graphql/ws", self.addr)
    }

    /// POSTs a GraphQL request, with `Authorization: Bearer <key>` when a key is given.
    pub async fn graphql(
        &self,
        key: Option<&str>,
        query: &str,
        variables: serde_json::Value,
    ) -> GraphqlReply {
        let mut request = self
            .http
            .post(self.url("/graphql"))
            .json(&serde_json::json!({ "query": query, "variables": variables }));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        Self::reply(request).await
    }

    /// POSTs a GraphQL request as a storefront widget: `Authorization: Bearer <publishable
    /// key>` and, when given, `X-Customer-Token: <token>`.
    pub async fn graphql_as_customer(
        &self,
        publishable_key: &str,
        customer_token: Option<&str>,
        query: &str,
        variables: serde_json::Value,
    ) -> GraphqlReply {
        let mut request = self
            .http
            .post(self.url("/graphql"))
            .bearer_auth(publishable_key)
            .json(&serde_json::json!({ "query": query, "variables": variables }));
        if let Some(token) = customer_token {
            request = request.header("X-Customer-Token", token);
        }
        Self::reply(request).await
    }

    async fn reply(request: reqwest::RequestBuilder) -> GraphqlReply {
        let response = request.send().await.expect("sending a GraphQL request");
        let status = response.status();
        let body = response.json().await.expect("a JSON GraphQL reply");
        GraphqlReply { status, body }
    }

    /// Asks `query` until `accept` holds for its `data` (the read models are eventually
    /// consistent), panicking after `timeout` with the last answer.
    pub async fn graphql_until(
        &self,
        key: &str,
        query: &str,
        variables: serde_json::Value,
        timeout: Duration,
        accept: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let reply = self.graphql(Some(key), query, variables.clone()).await;
            let data = reply.data().clone();
            if accept(&data) {
                return data;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("no accepted answer within {timeout:?}; last: {data:#}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Shuts the service down gracefully and returns how `run` ended.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.context("query service task")?
    }
}

// --- The projector -------------------------------------------------------------------------

/// A projector running inside the test process on a free port, with its own durable consumer.
pub struct TestProjector {
    addr: std::net::SocketAddr,
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The projector configuration of a test: `db`, `nats`, the durable consumer `consumer`,
/// acks awaited 2 s (so a killed projector's messages come back quickly), no scheduled or eager
/// RFM recomputation (tests recompute at times of their choosing).
pub fn projector_config(db: &TestDb, nats: &TestNats, consumer: &str) -> projector::Config {
    let mut config = projector::Config::new(db.db_args(), nats.nats_args());
    config.consumer = consumer.to_owned();
    config.ack_wait_secs = 2;
    config.rfm_interval_secs = 0;
    config.rfm_eager = false;
    config
}

/// Starts a projector with [`projector_config`].
pub async fn spawn_projector(db: &TestDb, nats: &TestNats, consumer: &str) -> TestProjector {
    spawn_projector_with(projector_config(db, nats, consumer)).await
}

/// Starts a projector with `config` on `127.0.0.1:0`.
pub async fn spawn_projector_with(config: projector::Config) -> TestProjector {
    common::telemetry::init("tests");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a port for the projector");
    let addr = listener.local_addr().expect("projector address");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(projector::run(
        config,
        listener,
        async move { stop.cancelled().await },
    ));
    TestProjector { addr, shutdown, task }
}

impl TestProjector {
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Graceful stop: the batch in progress is finished and acked first.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.context("projector task")?
    }

    /// Stops the projector as a crash would: wherever it is (in the middle of a batch
    /// transaction, before acking), it stops; nothing further is committed or acked.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

// --- The command service -------------------------------------------------------------------

pub mod command_api;
pub use command_api::{
    command_config, create_api_key, create_signing_secret, spawn_command_service, spawn_command_service_with,
    spawn_two_command_services, ApiClient, ApiResponse, OrgKeys, TestCommandService,
};

// --- The stream, read back whole ----------------------------------------------------------------

pub mod stream;

// --- GraphQL subscriptions ------------------------------------------------------------------

mod graphql_ws;
pub use graphql_ws::GraphqlWs;

// --- A headless browser -----------------------------------------------------------------------

pub mod browser;
pub use browser::Browser;

/// Events the projector has applied: its per-aggregate checkpoints added up.
pub async fn applied_events(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT coalesce(sum(last_sequence), 0)::bigint FROM rm.projection_checkpoints")
        .fetch_one(pool)
        .await
        .expect("reading the projection progress")
}

/// Waits until the projector has applied some event (polled every 5 ms, to catch it early in a
/// catch-up); fails after `timeout`.
pub async fn wait_first_applied(pool: &PgPool, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    while applied_events(pool).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the projector applied nothing within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the projector has applied every event of the store (the per-aggregate
/// checkpoints add up to the number of events); returns that number. Fails after `timeout`.
pub async fn wait_projected(pool: &PgPool, timeout: Duration) -> i64 {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (applied, total): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT coalesce(sum(last_sequence), 0)::bigint FROM rm.projection_checkpoints), \
                    (SELECT count(*) FROM events)",
        )
        .fetch_one(pool)
        .await
        .expect("reading the projection progress");
        if applied == total {
            return total;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "projector did not catch up: {applied} of {total} events applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
