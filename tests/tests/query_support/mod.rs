//! The whole platform for query-service tests: command API with its relay, projector and
//! query service, all in this process on their own database and stream, and an org with a
//! program, a location and keys of every role.

#![allow(dead_code)] // each test binary uses a different part

use std::time::Duration;

use loyalty_client::{Enrolment, Location, Program, Reward, StampCard};
use loyalty_tests::{
    projector_config, query_config, spawn_command_service, spawn_projector_with, spawn_query_service_config,
    OrgKeys, TestCommandService, TestDb, TestNats, TestProjector, TestQueryService,
};
use serde_json::{json, Value};
use uuid::Uuid;

/// The org every stack configures.
pub const ORG: &str = "acme";
/// Its location.
pub const LOCATION: &str = "main-street";

pub struct Stack {
    pub db: TestDb,
    pub nats: TestNats,
    pub commands: TestCommandService,
    pub projector: TestProjector,
    pub query: TestQueryService,
    pub keys: OrgKeys,
}

impl Stack {
    /// Starts everything and configures [`ORG`]: EUR, 1 point per euro, the default tiers, a
    /// coffee card (3 stamps), two rewards, location [`LOCATION`].
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// [`Stack::start`] with the query service's configuration adjusted by `configure`.
    pub async fn start_with(configure: impl FnOnce(&mut query_service::Config)) -> Self {
        Self::start_full(configure, true).await
    }

    /// [`Stack::start`] with a projector that scores RFM only when asked (no eager recompute
    /// racing the test's own `rfm::recompute`).
    pub async fn start_without_eager_rfm() -> Self {
        Self::start_full(|_| {}, false).await
    }

    async fn start_full(configure: impl FnOnce(&mut query_service::Config), rfm_eager: bool) -> Self {
        let db = TestDb::new().await;
        let nats = TestNats::new().await;
        let commands = spawn_command_service(&db, &nats).await;
        let mut projector_config = projector_config(&db, &nats, "projector");
        projector_config.rfm_eager = rfm_eager;
        let projector = spawn_projector_with(projector_config).await;
        // The relay creates the stream; the query service's live feed starts at its end.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !nats.stream_exists().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the relay did not create the stream"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut config = query_config(&db, &nats);
        config.command_api_url = commands.base_url();
        configure(&mut config);
        let query = spawn_query_service_config(config).await;
        let keys = OrgKeys::create(&db, ORG).await;
        let stack = Stack {
            db,
            nats,
            commands,
            projector,
            query,
            keys,
        };
        let admin = stack.commands.client(&stack.keys.admin);
        let program = Program {
            earn_rate: Some(1),
            stamp_cards: vec![StampCard {
                card_id: "coffee".into(),
                name: "Coffee card".into(),
                stamps_required: 3,
                reward_id: "free-coffee".into(),
                min_amount_minor: None,
            }],
            rewards: vec![
                reward("free-coffee", "Free coffee", 10),
                reward("tote-bag", "Tote bag", 500),
            ],
            ..Program::new("EUR")
        };
        admin
            .typed()
            .configure_program(ORG, &Uuid::new_v4().to_string(), &program)
            .await
            .expect("configuring the program");
        let location = Location {
            location_id: LOCATION.into(),
            name: "Main Street".into(),
        };
        admin
            .typed()
            .register_location(ORG, &Uuid::new_v4().to_string(), &location)
            .await
            .expect("registering the location");
        stack
    }

    /// Sends a command as JSON; panics unless it succeeds.
    pub async fn command(&self, method: reqwest::Method, path: &str, key: &str, body: Value) -> Value {
        let answer = self
            .commands
            .client(key)
            .send(method, path, Some(&Uuid::new_v4().to_string()), Some(&body))
            .await;
        assert!(
            (200..300).contains(&answer.status),
            "{path} answered {}: {}",
            answer.status,
            answer.text
        );
        answer.body
    }

    /// Enrols a member through the command API.
    pub async fn enroll(&self, external_id: &str, display_name: Option<&str>) -> Uuid {
        let enrolment = Enrolment {
            member_id: None,
            external_id: Some(external_id.to_owned()),
            display_name: display_name.map(str::to_owned),
        };
        self.commands
            .client(&self.keys.pos)
            .typed()
            .enroll(ORG, &Uuid::new_v4().to_string(), &enrolment)
            .await
            .unwrap_or_else(|error| panic!("enrolling {external_id}: {error}"))
            .member_id
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
        self.query.stop().await.unwrap();
        self.projector.stop().await.unwrap();
        self.commands.stop().await.unwrap();
        self.nats.cleanup().await;
        self.db.cleanup().await;
    }
}

fn reward(reward_id: &str, name: &str, points_cost: i64) -> Reward {
    Reward {
        reward_id: reward_id.into(),
        name: name.into(),
        points_cost,
        active: None,
    }
}
