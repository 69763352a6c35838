//! Producing events for the projector tests: domain commands decided by the real aggregates,
//! persisted by postgres-es into the test database, relayed to the test's stream by the real
//! relay (`command_service::relay`), or published by hand when a test needs to misbehave.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use command_service::relay::{Relay, RelayArgs, RelayConfig};
use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use cqrs_es::DomainEvent;
use domain::member::{Adjustment, Expiry, NewMember, Purchase, Receipt, Redemption, Refund, TierReview};
use domain::program::{Configuration, NewLocation, ProgramConfig, RewardDef, StampCardDef};
use domain::wire::StoredEvent;
use domain::{Member, MemberCommand, MemberError, MemberEvent, Program, ProgramCommand, ProgramSnapshot};
use loyalty_tests::{TestDb, TestNats};
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub fn t(rfc3339: &str) -> DateTime<Utc> {
    rfc3339
        .parse()
        .unwrap_or_else(|e| panic!("bad time {rfc3339}: {e}"))
}

/// A program in EUR with the default ladder, a 3-stamp coffee card and two rewards.
pub fn program_config(currency: &str) -> ProgramConfig {
    let mut config = ProgramConfig::with_defaults(currency);
    config.rewards = vec![
        RewardDef {
            reward_id: "free-coffee".into(),
            name: "Free coffee".into(),
            points_cost: 100,
            active: true,
        },
        RewardDef {
            reward_id: "tote".into(),
            name: "Tote bag".into(),
            points_cost: 300,
            active: true,
        },
    ];
    config.stamp_cards = vec![StampCardDef {
        card_id: "coffee".into(),
        name: "Coffee card".into(),
        stamps_required: 3,
        reward_id: "free-coffee".into(),
        min_amount_minor: 500,
    }];
    config
}

/// The write side of the tests: aggregates in memory, events appended to the event store.
pub struct Log {
    repo: PostgresEventRepository,
    programs: BTreeMap<String, Program>,
    members: HashMap<(String, Uuid), Member>,
    counts: HashMap<String, usize>,
    pending_programs: Vec<SerializedEvent>,
    pending_members: Vec<SerializedEvent>,
    /// Points drawn on each budgeted promotion (org, promotion), as the command side's budget
    /// table counts them.
    spent: HashMap<(String, String), i64>,
    /// Commands that appended events.
    pub commands: usize,
}

impl Log {
    pub fn new(pool: &PgPool) -> Self {
        Self {
            repo: PostgresEventRepository::new(pool.clone()),
            programs: BTreeMap::new(),
            members: HashMap::new(),
            counts: HashMap::new(),
            pending_programs: Vec::new(),
            pending_members: Vec::new(),
            spent: HashMap::new(),
            commands: 0,
        }
    }

    fn serialize<E: DomainEvent>(
        &mut self,
        aggregate_type: &str,
        aggregate_id: &str,
        events: &[E],
    ) -> Vec<SerializedEvent> {
        let count = self.counts.entry(aggregate_id.to_owned()).or_default();
        events
            .iter()
            .map(|event| {
                *count += 1;
                SerializedEvent::new(
                    aggregate_id.to_owned(),
                    *count,
                    aggregate_type.to_owned(),
                    event.event_type(),
                    event.event_version(),
                    serde_json::to_value(event).expect("serializable event"),
                    serde_json::json!({}),
                )
            })
            .collect()
    }

    pub async fn program(&mut self, org: &str, command: ProgramCommand) -> Vec<domain::ProgramEvent> {
        let program = self.programs.entry(org.to_owned()).or_default();
        let events = program
            .execute(command)
            .unwrap_or_else(|e| panic!("program command of {org} refused: {e}"));
        let serialized = self.serialize("program", org, &events);
        self.pending_programs.extend(serialized);
        self.commands += 1;
        events
    }

    pub async fn configure(&mut self, org: &str, config: ProgramConfig, at: DateTime<Utc>) {
        self.program(
            org,
            ProgramCommand::Configure(Configuration {
                org_id: org.to_owned(),
                config,
                at,
            }),
        )
        .await;
    }

    pub async fn location(&mut self, org: &str, location: &str, at: DateTime<Utc>) {
        self.program(
            org,
            ProgramCommand::RegisterLocation(NewLocation {
                org_id: org.to_owned(),
                location_id: location.to_owned(),
                name: format!("Store {location}"),
                at,
            }),
        )
        .await;
    }

    pub fn snapshot(&self, org: &str) -> ProgramSnapshot {
        self.programs
            .get(org)
            .and_then(Program::snapshot)
            .unwrap_or_else(|| panic!("org {org} has no program"))
    }

    pub fn member_state(&self, org: &str, member: Uuid) -> &Member {
        &self.members[&(org.to_owned(), member)]
    }

    /// Decides `command` for the member and queues its events; a refused command appends
    /// nothing.
    pub async fn member(
        &mut self,
        org: &str,
        member: Uuid,
        command: MemberCommand,
    ) -> Result<Vec<MemberEvent>, MemberError> {
        let aggregate = self.members.entry((org.to_owned(), member)).or_default();
        let events = aggregate.execute(command)?;
        for event in &events {
            if let MemberEvent::PurchaseRecorded { breakdown, .. } = event {
                for drawn in breakdown.promotions.iter().filter(|p| p.budget_left.is_some()) {
                    *self
                        .spent
                        .entry((org.to_owned(), drawn.promotion_id.clone()))
                        .or_default() += drawn.points;
                }
            }
        }
        if !events.is_empty() {
            let serialized = self.serialize("member", &format!("{org}/{member}"), &events);
            self.pending_members.extend(serialized);
            self.commands += 1;
        }
        Ok(events)
    }

    pub async fn enroll(
        &mut self,
        org: &str,
        display_name: Option<&str>,
        external_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> Uuid {
        let member_id = Uuid::new_v4();
        let command = MemberCommand::Enroll(NewMember {
            org_id: org.to_owned(),
            member_id,
            external_id: external_id.map(str::to_owned),
            display_name: display_name.map(str::to_owned),
            program: self.snapshot(org),
            at,
        });
        self.member(org, member_id, command).await.expect("enrolment");
        member_id
    }

    pub async fn purchase(
        &mut self,
        org: &str,
        member: Uuid,
        txn: &str,
        location: &str,
        amount_minor: i64,
        at: DateTime<Utc>,
    ) -> Vec<MemberEvent> {
        let program = self.snapshot(org);
        let budgets_left = program
            .config
            .budgeted_promotions()
            .map(|p| {
                let spent = self
                    .spent
                    .get(&(org.to_owned(), p.promotion_id.clone()))
                    .copied()
                    .unwrap_or(0);
                (p.promotion_id.clone(), p.budget_points.unwrap_or(0) - spent)
            })
            .collect();
        let command = MemberCommand::RecordPurchase(Purchase {
            receipt: Receipt {
                transaction_id: txn.to_owned(),
                location_id: location.to_owned(),
                amount_minor,
                currency: program.config.currency.clone(),
                occurred_at: at,
                items: None,
            },
            program,
            recorded_at: at,
            budgets_left,
        });
        self.member(org, member, command).await.expect("purchase")
    }

    pub async fn refund(
        &mut self,
        org: &str,
        member: Uuid,
        refund: &str,
        txn: &str,
        amount_minor: i64,
        at: DateTime<Utc>,
    ) -> Vec<MemberEvent> {
        let command = MemberCommand::RefundPurchase(Refund {
            refund_id: refund.to_owned(),
            transaction_id: txn.to_owned(),
            amount_minor,
            program: self.snapshot(org),
            at,
        });
        self.member(org, member, command).await.expect("refund")
    }

    pub async fn redeem(
        &mut self,
        org: &str,
        member: Uuid,
        redemption: &str,
        reward: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<MemberEvent>, MemberError> {
        let reward_def = self.snapshot(org).config.reward(reward).cloned();
        let command = MemberCommand::RedeemReward(Redemption {
            redemption_id: redemption.to_owned(),
            reward_id: reward.to_owned(),
            reward: reward_def,
            at,
        });
        self.member(org, member, command).await
    }

    pub async fn adjust(
        &mut self,
        org: &str,
        member: Uuid,
        adjustment: &str,
        delta: i64,
        at: DateTime<Utc>,
    ) -> Result<Vec<MemberEvent>, MemberError> {
        let command = MemberCommand::AdjustPoints(Adjustment {
            adjustment_id: adjustment.to_owned(),
            delta,
            reason: "goodwill".to_owned(),
            expiry_days: self.snapshot(org).config.expiry_days,
            at,
        });
        self.member(org, member, command).await
    }

    pub async fn expire(&mut self, org: &str, member: Uuid, as_of: DateTime<Utc>) -> Vec<MemberEvent> {
        self.member(org, member, MemberCommand::ExpirePoints(Expiry { as_of }))
            .await
            .expect("expiry")
    }

    pub async fn reevaluate(&mut self, org: &str, member: Uuid, as_of: DateTime<Utc>) -> Vec<MemberEvent> {
        let command = MemberCommand::ReevaluateTier(TierReview {
            as_of,
            program: self.snapshot(org),
        });
        self.member(org, member, command).await.expect("re-evaluation")
    }

    /// Takes the last queued member event out of the queue (its sequence stays used), for a
    /// test to store itself.
    pub fn take_last(&mut self) -> SerializedEvent {
        self.pending_members.pop().expect("a queued member event")
    }

    /// Counts an event written to the store behind the aggregate's back.
    pub fn skip_sequence(&mut self, aggregate_id: &str) {
        *self.counts.entry(aggregate_id.to_owned()).or_default() += 1;
    }

    /// Events queued and not yet in the store.
    pub fn pending(&self) -> usize {
        self.pending_programs.len() + self.pending_members.len()
    }

    /// Appends the queued events to the event store (one transaction per aggregate type), the
    /// way postgres-es does for the command service.
    pub async fn flush(&mut self) {
        let programs = std::mem::take(&mut self.pending_programs);
        if !programs.is_empty() {
            self.repo
                .persist::<Program>(&programs, None)
                .await
                .expect("persisting program events");
        }
        let members = std::mem::take(&mut self.pending_members);
        for chunk in members.chunks(2_000) {
            self.repo
                .persist::<Member>(chunk, None)
                .await
                .expect("persisting member events");
        }
    }
}

/// The real relay, publishing this test's event store to this test's stream.
pub struct TestRelay {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub async fn start_relay(db: &TestDb, nats: &TestNats) -> TestRelay {
    let config = RelayConfig {
        database_url: db.url().to_owned(),
        nats: nats.nats_args(),
        args: RelayArgs {
            relay_poll_interval_ms: 50,
            ..RelayArgs::default()
        },
    };
    let relay = Relay::new(config, nats.client().clone());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(relay.run(shutdown.clone()));
    TestRelay { shutdown, task }
}

impl TestRelay {
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("relay task").expect("relay");
    }
}

/// Creates this test's stream as the projector does (for tests that publish by hand).
pub async fn create_stream(nats: &TestNats) {
    nats.jetstream()
        .get_or_create_stream(projector::consumer::stream_config(&nats.nats_args()))
        .await
        .expect("creating the test stream");
}

/// Publishes `events` to the test's stream as the relay does, or, with `msg_id: false`,
/// without a `Nats-Msg-Id` (a republish the stream cannot recognise as a duplicate).
pub async fn publish(nats: &TestNats, events: &[StoredEvent], msg_id: bool) {
    let mut acks = Vec::new();
    for event in events {
        let subject = domain::wire::subject(nats.subject_prefix(), event.org_id(), &event.aggregate_type);
        let mut message =
            jetstream::message::PublishMessage::build().payload(serde_json::to_vec(event).unwrap().into());
        if msg_id {
            message = message.message_id(event.msg_id());
        }
        acks.push(
            nats.jetstream()
                .send_publish(subject, message)
                .await
                .expect("publishing"),
        );
    }
    for ack in acks {
        ack.await.expect("JetStream ack");
    }
}

/// Every event of the store, in global order.
pub async fn all_events(pool: &PgPool) -> Vec<StoredEvent> {
    projector::event::read_log(pool, 0, i64::MAX)
        .await
        .expect("reading the log")
}

pub use loyalty_tests::wait_projected;

/// Every row of every read-model table, as sorted JSON lines per table.
pub async fn snapshot(pool: &PgPool) -> BTreeMap<String, Vec<String>> {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'rm' ORDER BY 1")
            .fetch_all(pool)
            .await
            .unwrap();
    let mut out = BTreeMap::new();
    for table in tables {
        let rows: Vec<String> =
            sqlx::query_scalar(&format!("SELECT to_jsonb(t)::text FROM rm.{table} t ORDER BY 1"))
                .fetch_all(pool)
                .await
                .unwrap();
        out.insert(table, rows);
    }
    out
}

/// A small deterministic generator (xorshift64*), so a failing workload can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// A random workload of at least `commands` accepted commands over `orgs` (the first in JPY,
/// the others in EUR), on a virtual clock running from 2023 for about two years: enrolments,
/// purchases (some sent late by offline terminals), partial and full refunds, redemptions,
/// adjustments, expiry and tier re-evaluation runs, and the odd program change. Events are
/// flushed to the store every `flush_every` events.
pub async fn random_workload(
    log: &mut Log,
    rng: &mut Rng,
    orgs: &[&str],
    members_per_org: usize,
    commands: usize,
    flush_every: usize,
) {
    let mut clock = t("2023-01-01T00:00:00Z");
    let locations = ["north", "south", "east"];
    let mut members: BTreeMap<String, Vec<Uuid>> = BTreeMap::new();
    for (i, org) in orgs.iter().enumerate() {
        let currency = if i == 0 { "JPY" } else { "EUR" };
        log.configure(org, program_config(currency), clock).await;
        for location in locations {
            log.location(org, location, clock).await;
        }
        members.insert((*org).to_owned(), Vec::new());
    }
    let mut txn = 0_u64;
    let start = log.commands;
    while log.commands - start < commands {
        clock += chrono::Duration::minutes(rng.below(180) as i64);
        let org = *rng.pick(orgs);
        let roster = members.get_mut(org).unwrap();
        let roll = rng.below(1_000);
        if roster.len() < 5 || (roll >= 950 && roster.len() < members_per_org) {
            let name = (rng.below(2) == 0).then(|| format!("Player {}", roster.len()));
            let external = format!("ext-{}", roster.len());
            let member = log.enroll(org, name.as_deref(), Some(&external), clock).await;
            roster.push(member);
            continue;
        }
        let member = *rng.pick(roster);
        match roll {
            0..=549 | 950..=997 => {
                txn += 1;
                let amount = *rng.pick(&[300, 1_999, 4_500, 12_000, 56_000]);
                // Offline terminals send receipts up to three days late.
                let occurred_at = clock - chrono::Duration::minutes(rng.below(3 * 24 * 60) as i64);
                let location = *rng.pick(&locations);
                let program = log.snapshot(org);
                let command = domain::MemberCommand::RecordPurchase(Purchase {
                    receipt: Receipt {
                        transaction_id: format!("t{txn}"),
                        location_id: location.to_owned(),
                        amount_minor: amount,
                        currency: program.config.currency.clone(),
                        occurred_at,
                        items: None,
                    },
                    program,
                    recorded_at: clock,
                    budgets_left: Default::default(),
                });
                log.member(org, member, command).await.expect("purchase");
            }
            550..=679 => {
                let open: Vec<(String, i64)> = log
                    .member_state(org, member)
                    .purchases
                    .iter()
                    .filter(|(_, p)| p.amount_minor > p.refunded_minor)
                    .map(|(id, p)| (id.clone(), p.amount_minor - p.refunded_minor))
                    .collect();
                if let Some((purchase, left)) = open.get(rng.below(open.len().max(1) as u64) as usize) {
                    let amount = if rng.below(2) == 0 {
                        *left
                    } else {
                        (left / 3).max(1)
                    };
                    txn += 1;
                    log.refund(org, member, &format!("r{txn}"), purchase, amount, clock)
                        .await;
                }
            }
            680..=759 => {
                txn += 1;
                let reward = *rng.pick(&["free-coffee", "tote"]);
                let _ = log.redeem(org, member, &format!("x{txn}"), reward, clock).await;
            }
            760..=799 => {
                txn += 1;
                let delta = *rng.pick(&[-40, 25, 100]);
                let _ = log.adjust(org, member, &format!("a{txn}"), delta, clock).await;
            }
            800..=879 => {
                log.expire(org, member, clock).await;
            }
            880..=947 => {
                log.reevaluate(org, member, clock).await;
            }
            _ => {
                let mut config = (*log.snapshot(org).config).clone();
                config.earn_rate = if config.earn_rate == 1 { 2 } else { 1 };
                log.configure(org, config, clock).await;
            }
        }
        if log.pending() >= flush_every {
            log.flush().await;
        }
    }
    log.flush().await;
}

/// The consumer's state on the server: (pending, waiting for an ack); `None` while the
/// consumer does not exist.
pub async fn consumer_backlog(nats: &TestNats, consumer: &str) -> Option<(u64, usize)> {
    let stream = nats.jetstream().get_stream(nats.stream()).await.ok()?;
    let info = stream.consumer_info(consumer).await.ok()?;
    Some((info.num_pending, info.num_ack_pending))
}

/// Waits until the consumer has nothing pending and nothing unacked.
pub async fn wait_consumer_drained(nats: &TestNats, consumer: &str, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let backlog = consumer_backlog(nats, consumer).await;
        if backlog == Some((0, 0)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "consumer not drained: {backlog:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
