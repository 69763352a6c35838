//! The command service in tests: start it on a free port against a [`TestDb`] and [`TestNats`],
//! create API keys, and call its JSON API through the typed client (`loyalty-client`): its raw
//! layer for requests and answers checked byte for byte, its typed calls for set-ups.
//!
//! ```no_run
//! # async fn demo() {
//! use loyalty_tests::{spawn_command_service, TestDb, TestNats};
//! let db = TestDb::new().await;
//! let nats = TestNats::new().await;
//! let service = spawn_command_service(&db, &nats).await;
//! let admin = service.client(&loyalty_tests::create_api_key(&db, "acme", common::keys::Role::Admin).await);
//! let answer = admin
//!     .put("/v1/orgs/acme/program", "k1", &serde_json::json!({"currency": "EUR"}))
//!     .await;
//! assert_eq!(answer.status, 200);
//! service.stop().await.unwrap();
//! # }
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use common::keys::Role;
pub use loyalty_client::RawResponse as ApiResponse;
use reqwest::Method;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{TestDb, TestNats};

/// A command service running inside the test process.
pub struct TestCommandService {
    addr: SocketAddr,
    /// Without a key; [`TestCommandService::client`] adds one on the same connection pool.
    client: loyalty_client::Client,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The command service configuration of a test: `db` (already migrated), `nats` (the test's
/// stream and prefix), the relay on, a fast relay poll.
pub fn command_config(db: &TestDb, nats: &TestNats) -> command_service::Config {
    let mut config = command_service::Config::new(db.db_args(), nats.nats_args());
    config.migrate = false;
    config.relay.relay_poll_interval_ms = 100;
    config.shutdown_grace_secs = 5;
    config.secrets.secrets_pepper = Some(crate::TEST_PEPPER.to_owned());
    // A fixed bound: debug builds on a shared machine answer slower than a production latency
    // target, which would shed requests the tests expect to run (`overload` tests the target).
    config.shed_latency_target_ms = 0;
    config
}

/// Starts the command service (with its relay) on `db` and `nats`.
pub async fn spawn_command_service(db: &TestDb, nats: &TestNats) -> TestCommandService {
    spawn_command_service_with(command_config(db, nats)).await
}

/// Starts two command services on `db` and `nats`, as two processes of one deployment; only the
/// first runs the relay (the second would wait for the first's lock anyway).
pub async fn spawn_two_command_services(
    db: &TestDb,
    nats: &TestNats,
) -> (TestCommandService, TestCommandService) {
    let first = spawn_command_service(db, nats).await;
    let mut config = command_config(db, nats);
    config.relay_enabled = false;
    (first, spawn_command_service_with(config).await)
}

/// Starts the command service with `config` on `127.0.0.1:0`; returns once it answers
/// `/healthz`.
pub async fn spawn_command_service_with(config: command_service::Config) -> TestCommandService {
    common::telemetry::init("tests");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a port for the command service");
    let addr = listener.local_addr().expect("command service address");
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(command_service::run(config, listener, async move {
        stop.cancelled().await
    }));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");
    let service = TestCommandService {
        addr,
        client: loyalty_client::Client::with_http(http, &format!("http://{addr}")),
        shutdown,
        task,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if service.task.is_finished() {
            let outcome = service.task.await;
            panic!("the command service stopped during startup: {outcome:?}");
        }
        if let Ok(response) = service.client.send(Method::GET, "/healthz", None, None).await {
            if response.is_success() {
                return service;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the command service did not answer /healthz within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates an API key of `org` with `role` in `db`; returns the key.
pub async fn create_api_key(db: &TestDb, org: &str, role: Role) -> String {
    common::keys::create_key(db.pool(), org, role)
        .await
        .unwrap_or_else(|error| panic!("creating a {role} key for {org}: {error:#}"))
}

/// Creates a signing secret of `org` in `db` (derived with [`crate::TEST_PEPPER`], as the
/// test services are configured); returns the secret.
pub async fn create_signing_secret(db: &TestDb, org: &str) -> String {
    let pepper = common::signing_secrets::Pepper::new(Some(crate::TEST_PEPPER));
    common::signing_secrets::create(db.pool(), &pepper, org, uuid::Uuid::new_v4())
        .await
        .unwrap_or_else(|error| panic!("creating a signing secret for {org}: {error:#}"))
        .secret
}

/// One key of every role for an org.
pub struct OrgKeys {
    pub pos: String,
    pub admin: String,
    pub storefront: String,
    pub analyst: String,
    pub publishable: String,
}

impl OrgKeys {
    /// Creates the five keys of `org`.
    pub async fn create(db: &TestDb, org: &str) -> Self {
        Self {
            pos: create_api_key(db, org, Role::Pos).await,
            admin: create_api_key(db, org, Role::Admin).await,
            storefront: create_api_key(db, org, Role::Storefront).await,
            analyst: create_api_key(db, org, Role::Analyst).await,
            publishable: create_api_key(db, org, Role::Publishable).await,
        }
    }

    pub fn key(&self, role: Role) -> &str {
        match role {
            Role::Pos => &self.pos,
            Role::Admin => &self.admin,
            Role::Storefront => &self.storefront,
            Role::Analyst => &self.analyst,
            Role::Publishable => &self.publishable,
        }
    }
}

impl TestCommandService {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A client that sends `Authorization: Bearer <key>`.
    pub fn client(&self, key: &str) -> ApiClient {
        ApiClient(self.client.with_key(key))
    }

    /// A client without credentials.
    pub fn anonymous(&self) -> ApiClient {
        ApiClient(self.client.anonymous())
    }

    /// The sum of the samples of metric `name` on `/metrics` whose labels include each of
    /// `labels` (`key="value"`); 0 when there is none. Metrics are per test binary: the
    /// services of the tests running beside this one count into the same samples.
    pub async fn metric_sum(&self, name: &str, labels: &[&str]) -> f64 {
        let page = reqwest::get(self.url("/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("reading /metrics");
        page.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                    && labels.iter().all(|label| line.contains(label))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Graceful stop: stops accepting, finishes running commands, stops the relay.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.context("command service task")?
    }
}

/// A client of the command API for tests: the raw calls of [`loyalty_client::Client`] that
/// panic when no answer comes (a test only ever looks at answers), and [`ApiClient::typed`] for
/// the typed calls.
#[derive(Clone)]
pub struct ApiClient(loyalty_client::Client);

impl ApiClient {
    /// The typed client, with this client's key.
    pub fn typed(&self) -> &loyalty_client::Client {
        &self.0
    }

    /// Sends a request; `idempotency_key` and `body` only when given.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        idempotency_key: Option<&str>,
        body: Option<&Value>,
    ) -> ApiResponse {
        self.0
            .send(method.clone(), path, idempotency_key, body)
            .await
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
    }

    /// Sends `body` as raw bytes with `content_type`.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        idempotency_key: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> ApiResponse {
        self.0
            .send_bytes(method.clone(), path, idempotency_key, content_type, body)
            .await
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
    }

    pub async fn get(&self, path: &str) -> ApiResponse {
        self.send(Method::GET, path, None, None).await
    }

    pub async fn post(&self, path: &str, idempotency_key: &str, body: &Value) -> ApiResponse {
        self.send(Method::POST, path, Some(idempotency_key), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, idempotency_key: &str, body: &Value) -> ApiResponse {
        self.send(Method::PUT, path, Some(idempotency_key), Some(body))
            .await
    }

    /// Gives org `acme` a one-tier program (every purchase earns at the same rate, whatever
    /// the order), a location `store-1` and one member; returns the member's id.
    pub async fn acme_with_one_member(&self) -> uuid::Uuid {
        let program = serde_json::json!({
            "currency": "EUR",
            "tiers": [{"name": "Member", "threshold_points": 0, "multiplier_bps": 10000}]
        });
        let answer = self.put("/v1/orgs/acme/program", "p", &program).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let location = serde_json::json!({"location_id": "store-1", "name": "Store"});
        let answer = self.post("/v1/orgs/acme/locations", "l", &location).await;
        assert_eq!(answer.status, 201, "{}", answer.text);
        let answer = self
            .post("/v1/orgs/acme/members", "m", &serde_json::json!({}))
            .await;
        assert_eq!(answer.status, 201, "{}", answer.text);
        answer.body["member_id"].as_str().unwrap().parse().unwrap()
    }
}
