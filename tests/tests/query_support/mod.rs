//! The whole platform for query-service tests: command API with its relay, projector and
//! query service, all in this process on their own database and stream, and an org with a
//! program, a location and keys of every role.

#![allow(dead_code)] // each test binary uses a different part

use std::time::Duration;

use common::keys::Role;
use loyalty_tests::{spawn_query_service, TestDb, TestNats, TestQueryService};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The org every stack configures.
pub const ORG: &str = "acme";
/// Its location.
pub const LOCATION: &str = "main-street";

/// Keys of one org.
pub struct Keys {
    pub pos: String,
    pub admin: String,
    pub storefront: String,
    pub analyst: String,
}

impl Keys {
    pub async fn create(db: &TestDb, org: &str) -> Self {
        let key = |role| common::keys::create_key(db.pool(), org, role);
        Keys {
            pos: key(Role::Pos).await.unwrap(),
            admin: key(Role::Admin).await.unwrap(),
            storefront: key(Role::Storefront).await.unwrap(),
            analyst: key(Role::Analyst).await.unwrap(),
        }
    }
}

pub struct Stack {
    pub db: TestDb,
    pub nats: TestNats,
    pub query: TestQueryService,
    pub keys: Keys,
    command_url: String,
    http: reqwest::Client,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

async fn listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

impl Stack {
    /// Starts everything and configures [`ORG`]: EUR, 1 point per euro, the default tiers, a
    /// coffee card (3 stamps), two rewards, location [`LOCATION`].
    pub async fn start() -> Self {
        let db = TestDb::new().await;
        let nats = TestNats::new().await;
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();

        let (command_listener, command_url) = listener().await;
        let config = command_service::Config::new(db.db_args(), nats.nats_args());
        let token = stop.clone();
        tasks.push(tokio::spawn(command_service::run(
            config,
            command_listener,
            async move { token.cancelled().await },
        )));

        let (projector_listener, _) = listener().await;
        let config = projector::Config::new(db.db_args(), nats.nats_args());
        let token = stop.clone();
        tasks.push(tokio::spawn(projector::run(
            config,
            projector_listener,
            async move { token.cancelled().await },
        )));

        // The relay creates the stream; the query service's live feed starts at its end.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !nats.stream_exists().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the relay did not create the stream"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let query = spawn_query_service(&db, &nats).await;
        let keys = Keys::create(&db, ORG).await;
        let stack = Stack {
            db,
            nats,
            query,
            keys,
            command_url,
            http: reqwest::Client::new(),
            stop,
            tasks,
        };
        stack
            .command(
                reqwest::Method::PUT,
                &format!("/v1/orgs/{ORG}/program"),
                &stack.keys.admin,
                json!({
                    "currency": "EUR",
                    "earn_rate": 1,
                    "stamp_cards": [{"card_id": "coffee", "name": "Coffee card", "stamps_required": 3,
                                     "reward_id": "free-coffee"}],
                    "rewards": [{"reward_id": "free-coffee", "name": "Free coffee", "points_cost": 10},
                                {"reward_id": "tote-bag", "name": "Tote bag", "points_cost": 500}],
                }),
            )
            .await;
        stack
            .command(
                reqwest::Method::POST,
                &format!("/v1/orgs/{ORG}/locations"),
                &stack.keys.admin,
                json!({"location_id": LOCATION, "name": "Main Street"}),
            )
            .await;
        stack
    }

    /// Sends a command; panics unless it succeeds.
    pub async fn command(&self, method: reqwest::Method, path: &str, key: &str, body: Value) -> Value {
        let response = self
            .http
            .request(method, format!("{}{path}", self.command_url))
            .bearer_auth(key)
            .header("Idempotency-Key", Uuid::new_v4().to_string())
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path} answered {status}: {body}");
        body
    }

    /// Enrols a member through the command API.
    pub async fn enroll(&self, external_id: &str, display_name: Option<&str>) -> Uuid {
        let body = self
            .command(
                reqwest::Method::POST,
                &format!("/v1/orgs/{ORG}/members"),
                &self.keys.pos,
                json!({"external_id": external_id, "display_name": display_name}),
            )
            .await;
        body["member_id"].as_str().unwrap().parse().unwrap()
    }

    /// Records a purchase at [`LOCATION`] now; returns the command's answer.
    pub async fn purchase(&self, member: Uuid, transaction_id: &str, amount_minor: i64) -> Value {
        self.command(
            reqwest::Method::POST,
            &format!("/v1/orgs/{ORG}/members/{member}/purchases"),
            &self.keys.pos,
            json!({
                "transaction_id": transaction_id,
                "location_id": LOCATION,
                "amount_minor": amount_minor,
                "currency": "EUR",
                "occurred_at": chrono::Utc::now(),
            }),
        )
        .await
    }

    /// Waits until the read model shows `member` with `points` (the projector is asynchronous).
    pub async fn wait_for_balance(&self, member: Uuid, points: i64) {
        self.query
            .graphql_until(
                &self.keys.analyst,
                "query($org: ID!, $id: ID!) { member(orgId: $org, memberId: $id) { balance { points } } }",
                json!({"org": ORG, "id": member}),
                Duration::from_secs(20),
                |data| data["member"]["balance"]["points"] == points,
            )
            .await;
    }

    /// Stops every service and removes the database and stream.
    pub async fn cleanup(self) {
        self.stop.cancel();
        for task in self.tasks {
            if let Err(error) = task.await.unwrap() {
                panic!("a service failed: {error:#}");
            }
        }
        self.query.stop().await.unwrap();
        self.nats.cleanup().await;
        self.db.cleanup().await;
    }
}
