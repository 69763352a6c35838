//! What-if simulation (SPEC §9): the org's real history replayed with a draft program in force
//! for the commands recorded in `[from, to)`, members' state before `from` as it really was.
//! Pure: the caller streams the org's log in order (program and member events, each with the
//! time its command was recorded) into [`Simulator::feed_program`] and
//! [`Simulator::feed_member`], then takes the [`Report`]. Nothing is written anywhere.
//!
//! Each command of the window is rebuilt from its first event ([`commands`]) and decided again
//! by the live domain code ([`Member::execute`]) on the member's simulated state: no rule is
//! implemented twice. Budgets are drawn in log order, as live: what the log drew before `from`,
//! then what the draft's decisions draw. With [`Draft::InForce`] every command is decided with
//! the program version that really decided it, which reproduces every awarded point exactly:
//! the simulator's own oracle.
//!
//! Memory is one member state per member of the org (what the command service loads per
//! command), independent of how many events are streamed through.

mod commands;
pub mod report;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::calendar::TimeZone;
use crate::member::{Member, MemberEvent};
use crate::program::{ProgramConfig, ProgramEvent, ProgramSnapshot};
use commands::{command_for, is_head, names_command, Facts};
use report::{iso_week, Side, Tally, TierChange};
pub use report::{Report, MAX_TIER_CHANGES};

/// The program the window is replayed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Draft {
    /// The programs that really were in force, version by version.
    InForce,
    /// One draft program for every command of the window (shared by all of them).
    Program(Arc<ProgramConfig>),
}

/// Where a logged member event sits: when its command was recorded and which command it was.
#[derive(Debug, Clone, Copy)]
pub struct Logged<'a> {
    /// The server clock when the command was received (the purchase's `recorded_at`).
    pub recorded_at: DateTime<Utc>,
    /// What identifies the command among the member's events: its name (`RecordPurchase`,
    /// the job's name, ...), a space, its idempotency key; `None` when the log does not say,
    /// then every event that can start a command starts one.
    pub command: Option<&'a str>,
}

/// One member as simulated, and as it really was.
#[derive(Debug, Default)]
struct Simulated {
    member: Member,
    last_command: Option<String>,
    actual_tier: String,
    actual_balance: i64,
}

/// The fold of one org's log into a [`Report`].
#[derive(Debug)]
pub struct Simulator {
    org_id: String,
    draft: Draft,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    programs: BTreeMap<u64, Arc<ProgramConfig>>,
    version: u64,
    locations: Arc<BTreeSet<String>>,
    members: HashMap<Uuid, Simulated>,
    spent: BTreeMap<String, i64>,
    tally: Tally,
    member_points: Option<BTreeMap<Uuid, (i64, i64)>>,
}

impl Simulator {
    pub fn new(org_id: &str, draft: Draft, from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        Simulator {
            org_id: org_id.to_owned(),
            draft,
            from,
            to,
            programs: BTreeMap::new(),
            version: 0,
            locations: Arc::default(),
            members: HashMap::new(),
            spent: BTreeMap::new(),
            tally: Tally::default(),
            member_points: None,
        }
    }

    /// Also keeps each member's purchase points in the window, actual and draft, for
    /// [`Simulator::member_points`] (the oracle's member-by-member check).
    pub fn keep_member_points(mut self) -> Self {
        self.member_points = Some(BTreeMap::new());
        self
    }

    /// Each member's `(actual, draft)` purchase points in the window, if kept.
    pub fn member_points(&self) -> Option<&BTreeMap<Uuid, (i64, i64)>> {
        self.member_points.as_ref()
    }

    pub fn feed_program(&mut self, event: ProgramEvent) {
        match event {
            ProgramEvent::ProgramConfigured { version, config, .. } => {
                self.programs.insert(version, Arc::new(config));
                self.version = self.version.max(version);
            }
            ProgramEvent::LocationRegistered { location_id, .. } => {
                Arc::make_mut(&mut self.locations).insert(location_id);
            }
        }
    }

    /// The program a command of the window is decided with: the draft, or the version that
    /// really decided it (the one its event names, else the latest one logged).
    fn program_for(&self, event: &MemberEvent) -> Option<ProgramSnapshot> {
        let (version, config) = match &self.draft {
            Draft::Program(config) => (self.version + 1, config),
            Draft::InForce => {
                let named = match event {
                    MemberEvent::MemberEnrolled { program_version, .. }
                    | MemberEvent::PurchaseRecorded { program_version, .. }
                    | MemberEvent::TierUpgraded { program_version, .. }
                    | MemberEvent::TierDowngraded { program_version, .. } => *program_version,
                    _ => self.version,
                };
                (named, self.programs.get(&named)?)
            }
        };
        Some(ProgramSnapshot {
            version,
            config: Arc::clone(config),
            locations: Arc::clone(&self.locations),
        })
    }

    fn budgets_left(&self, program: &ProgramSnapshot) -> BTreeMap<String, i64> {
        program
            .config
            .budgeted_promotions()
            .map(|p| {
                let spent = self.spent.get(&p.promotion_id).copied().unwrap_or(0);
                (
                    p.promotion_id.clone(),
                    (p.budget_points.unwrap_or(0) - spent).max(0),
                )
            })
            .collect()
    }

    fn draw(&mut self, event: &MemberEvent) {
        if let MemberEvent::PurchaseRecorded { breakdown, .. } = event {
            for applied in breakdown.promotions.iter().filter(|p| p.budget_left.is_some()) {
                *self.spent.entry(applied.promotion_id.clone()).or_default() += applied.points;
            }
        }
    }

    fn time_zone(&self) -> TimeZone {
        match &self.draft {
            Draft::Program(config) => config.time_zone,
            Draft::InForce => self
                .programs
                .get(&self.version)
                .map(|c| c.time_zone)
                .unwrap_or_default(),
        }
    }

    /// Counts what `event` awarded on `side`.
    fn count(&mut self, side: Side, member_id: Uuid, event: &MemberEvent) {
        match event {
            MemberEvent::PurchaseRecorded {
                tier,
                location_id,
                occurred_at,
                breakdown,
                ..
            } => {
                let week = iso_week(self.time_zone(), *occurred_at);
                self.tally.purchase(side, tier, location_id, week, breakdown);
                if let Some(points) = self.member_points.as_mut() {
                    let sums = points.entry(member_id).or_default();
                    match side {
                        Side::Actual => sums.0 += breakdown.total,
                        Side::Draft => sums.1 += breakdown.total,
                    }
                }
            }
            MemberEvent::AchievementUnlocked { reward_points, .. } => self.tally.reward(side, *reward_points),
            _ => {}
        }
    }

    /// Feeds the next member event of the log.
    pub fn feed_member(&mut self, member_id: Uuid, event: MemberEvent, logged: Logged<'_>) {
        if logged.recorded_at >= self.to {
            return;
        }
        self.tally.report.events_read += 1;
        let in_window = logged.recorded_at >= self.from;
        let sim = self.members.entry(member_id).or_default();
        match &event {
            MemberEvent::MemberEnrolled { tier, .. } => sim.actual_tier.clone_from(tier),
            MemberEvent::TierUpgraded { to, .. } | MemberEvent::TierDowngraded { to, .. } => {
                sim.actual_tier.clone_from(to)
            }
            _ => {}
        }
        if let Some(balance) = balance_after(&event) {
            sim.actual_balance = balance;
        }
        // A command is decided again at the event that names it (a redemption may first
        // expire due points, a purchase upgrade the tier: those are its consequences).
        let head = match logged.command {
            Some(command) => sim.last_command.as_deref() != Some(command) && names_command(&event, command),
            None => is_head(&event),
        };
        if head {
            match (logged.command, &mut sim.last_command) {
                // The member's buffer is reused: one allocation per member, not per command.
                (Some(command), Some(last)) => command.clone_into(last),
                (command, last) => *last = command.map(str::to_owned),
            }
        }
        if !in_window {
            self.draw(&event);
            if let Some(sim) = self.members.get_mut(&member_id) {
                sim.member.evolve(event);
            }
            return;
        }
        self.count(Side::Actual, member_id, &event);
        let MemberEvent::PurchaseRecorded { breakdown, .. } = &event else {
            if head {
                self.decide(member_id, &event, logged, None);
            }
            return;
        };
        self.tally.report.purchases += 1;
        let actual = breakdown.total;
        if head {
            self.decide(member_id, &event, logged, Some(actual));
        }
    }

    /// Decides again the command `event` starts, on the member's simulated state.
    fn decide(&mut self, member_id: Uuid, event: &MemberEvent, logged: Logged<'_>, actual: Option<i64>) {
        let Some(program) = self.program_for(event) else {
            self.tally.report.commands_refused += 1;
            return;
        };
        let facts = Facts {
            org_id: &self.org_id,
            budgets_left: self.budgets_left(&program),
            program,
            recorded_at: logged.recorded_at,
        };
        let Some(command) = command_for(event, member_id, facts) else {
            return;
        };
        let Some(sim) = self.members.get_mut(&member_id) else {
            return;
        };
        let decided = match sim.member.execute(command) {
            Ok(events) => events,
            Err(_) => {
                self.tally.report.commands_refused += 1;
                if actual.is_some() {
                    self.tally.report.purchases_changed += 1;
                }
                return;
            }
        };
        for decided_event in &decided {
            self.draw(decided_event);
            self.count(Side::Draft, member_id, decided_event);
            if let (Some(actual), MemberEvent::PurchaseRecorded { breakdown, .. }) = (actual, decided_event) {
                if breakdown.total != actual {
                    self.tally.report.purchases_changed += 1;
                }
            }
        }
    }

    /// The report of everything fed so far.
    pub fn report(&self) -> Report {
        let mut tier_changes = Vec::new();
        let mut liability_delta = 0i64;
        for (member_id, sim) in &self.members {
            liability_delta = liability_delta.saturating_add(sim.member.points.balance - sim.actual_balance);
            if sim.member.is_enrolled() && sim.member.tier.name != sim.actual_tier {
                tier_changes.push(TierChange {
                    member_id: *member_id,
                    actual_tier: sim.actual_tier.clone(),
                    draft_tier: sim.member.tier.name.clone(),
                });
            }
        }
        tier_changes.sort_by_key(|c| c.member_id);
        let total = tier_changes.len() as u64;
        tier_changes.truncate(MAX_TIER_CHANGES);
        let members = self.members.len() as u64;
        let mut report = self.tally.report();
        report.tier_changes = tier_changes;
        report.tier_changes_total = total;
        report.liability_delta = liability_delta;
        report.members = members;
        report
    }
}

/// The balance a points-moving event says the member was left with.
fn balance_after(event: &MemberEvent) -> Option<i64> {
    match event {
        MemberEvent::PurchaseRecorded { balance_after, .. }
        | MemberEvent::PurchaseRefunded { balance_after, .. }
        | MemberEvent::RewardRedeemed { balance_after, .. }
        | MemberEvent::PointsAdjusted { balance_after, .. }
        | MemberEvent::PointsExpired { balance_after, .. }
        | MemberEvent::AchievementUnlocked { balance_after, .. } => Some(*balance_after),
        _ => None,
    }
}
