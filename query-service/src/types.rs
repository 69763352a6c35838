//! The GraphQL object types. Doc comments become the field descriptions of the SDL.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use domain::MemberEvent;

use crate::cursor;
use crate::db::{
    BalanceRow, Db, EventRow, FullProgram, LeaderboardRow, MemberRow, RewardRow, RfmRow, StampCardDefRow,
    StampCardRow, TierChangeRow, TierRow, TransitionRow,
};
use crate::error::{QueryError, QueryResult};
use crate::live::{LiveEvent, MemberKey};
use crate::loaders::{
    BalanceOf, DirectoryOf, Loaders, ProgramOf, RanksOf, RfmOf, StampCardsOf, TierHistoryOf, TierOf,
    TransitionsOf,
};

/// The 11 RFM segments, best first.
pub const SEGMENTS: [&str; 11] = [
    "Champions",
    "Loyal Customers",
    "Potential Loyalists",
    "New Customers",
    "Promising",
    "Need Attention",
    "About to Sleep",
    "At Risk",
    "Can't Lose Them",
    "Hibernating",
    "Lost",
];

/// The segment of an (R, F) cell (SPEC §6 grid; both scores 1–5).
pub fn segment_of(r: i16, f: i16) -> &'static str {
    match (r, f) {
        (5, 1) => "New Customers",
        (4 | 5, 2 | 3) => "Potential Loyalists",
        (5, 4 | 5) => "Champions",
        (4, 1) => "Promising",
        (3 | 4, 4 | 5) => "Loyal Customers",
        (3, 1 | 2) => "About to Sleep",
        (3, 3) => "Need Attention",
        (2, 1 | 2) => "Hibernating",
        (1 | 2, 3 | 4) => "At Risk",
        (1 | 2, 5) => "Can't Lose Them",
        _ => "Lost",
    }
}

/// A leaderboard period (UTC).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// The current ISO week (Monday to Sunday).
    Week,
    /// The current calendar month.
    Month,
    /// Since the program started.
    AllTime,
}

impl Period {
    pub const ALL: [Period; 3] = [Period::Week, Period::Month, Period::AllTime];

    /// The projector's name of the period.
    pub fn as_db(self) -> &'static str {
        match self {
            Period::Week => "week",
            Period::Month => "month",
            Period::AllTime => "all",
        }
    }

    pub fn from_db(name: &str) -> Option<Period> {
        Period::ALL.into_iter().find(|period| period.as_db() == name)
    }
}

fn loaders<'a>(ctx: &Context<'a>) -> &'a Loaders {
    ctx.data_unchecked::<Loaders>()
}

pub(crate) fn db<'a>(ctx: &Context<'a>) -> &'a Db {
    ctx.data_unchecked::<Db>()
}

/// A loyalty member of an org.
pub struct Member {
    pub row: MemberRow,
}

impl Member {
    fn key(&self) -> MemberKey {
        self.row.key()
    }
}

/// A loyalty member of an org.
#[Object]
impl Member {
    /// The member's id (a UUID assigned at enrolment).
    async fn member_id(&self) -> ID {
        ID(self.row.member_id.to_string())
    }

    /// The POS customer id or card number, unique per org.
    async fn external_id(&self) -> Option<&str> {
        self.row.external_id.as_deref()
    }

    /// The name the member chose to be shown (on leaderboards, among others).
    async fn display_name(&self) -> Option<&str> {
        self.row.display_name.as_deref()
    }

    /// When the member enrolled.
    async fn enrolled_at(&self) -> DateTime<Utc> {
        self.row.enrolled_at
    }

    /// Points balance and its history in totals.
    async fn balance(&self, ctx: &Context<'_>) -> QueryResult<Balance> {
        let row = loaders(ctx).load_one(BalanceOf(self.key())).await?;
        Ok(Balance(row.unwrap_or_default()))
    }

    /// The member's tier and the progress to the next one.
    async fn tier(&self, ctx: &Context<'_>) -> QueryResult<TierProgress> {
        if let Some(row) = loaders(ctx).load_one(TierOf(self.key())).await? {
            return Ok(TierProgress::from(row));
        }
        // Enrolled but not yet projected into the tier model: the program's entry tier.
        let program = loaders(ctx).load_one(ProgramOf(self.row.org_id.clone())).await?;
        program.as_ref().and_then(TierProgress::entry).ok_or_else(|| {
            anyhow::anyhow!("member {} has no tier and its org no program", self.row.member_id).into()
        })
    }

    /// RFM scores and segment; null until the member's first purchase has been scored.
    async fn rfm(&self, ctx: &Context<'_>) -> QueryResult<Option<Rfm>> {
        Ok(loaders(ctx).load_one(RfmOf(self.key())).await?.map(Rfm))
    }

    /// Progress on each stamp card the member has collected stamps on.
    async fn stamp_cards(&self, ctx: &Context<'_>) -> QueryResult<Vec<StampCard>> {
        let cards = loaders(ctx).load_one(StampCardsOf(self.key())).await?;
        Ok(cards.unwrap_or_default().into_iter().map(StampCard).collect())
    }

    /// Active rewards of the catalogue the member's balance covers now, cheapest first.
    async fn affordable_rewards(&self, ctx: &Context<'_>) -> QueryResult<Vec<Reward>> {
        let loaders = loaders(ctx);
        let (balance, program) = futures::try_join!(
            loaders.load_one(BalanceOf(self.key())),
            loaders.load_one(ProgramOf(self.row.org_id.clone())),
        )?;
        let balance = balance.map_or(0, |b| b.balance);
        Ok(program
            .map(|p| p.rewards)
            .unwrap_or_default()
            .into_iter()
            .filter(|reward| reward.active && reward.points_cost <= balance)
            .map(Reward)
            .collect())
    }

    /// The member's events, newest first, with the points each one moved (from the event
    /// store, so always complete and current). `first`: page size, 1 to 100; `after`: the
    /// `endCursor` of the previous page; `pointsOnly`: only events that moved points.
    #[graphql(
        complexity = "cursor::list_complexity(first.unwrap_or(cursor::DEFAULT_PAGE), child_complexity)"
    )]
    async fn history(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
        #[graphql(default = false)] points_only: bool,
    ) -> QueryResult<Connection<String, HistoryEntry>> {
        let limit = cursor::page_size("first", first.unwrap_or(cursor::DEFAULT_PAGE))?;
        let before: Option<i64> = cursor::decode(after.as_deref())?;
        let mut rows = db(ctx)
            .history(&self.key(), before, points_only, limit + 1)
            .await?;
        let has_next = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let mut connection = Connection::new(before.is_some(), has_next);
        connection.edges = rows
            .into_iter()
            .map(|row| Edge::new(cursor::encode(row.sequence), HistoryEntry::from(row)))
            .collect();
        Ok(connection)
    }

    /// The member's current rank on the week, month and all-time boards (org-wide, or of one
    /// location); a period without points is absent.
    async fn leaderboard_ranks(
        &self,
        ctx: &Context<'_>,
        location_id: Option<ID>,
    ) -> QueryResult<Vec<LeaderboardRank>> {
        let location = location_id.map(|id| id.0).unwrap_or_default();
        let rows = loaders(ctx)
            .load_one(RanksOf(self.key(), location.clone()))
            .await?
            .unwrap_or_default();
        let mut ranks: Vec<LeaderboardRank> = rows
            .into_iter()
            .filter_map(|row| {
                Some(LeaderboardRank {
                    period: Period::from_db(&row.period)?,
                    period_key: row.period_key,
                    location_id: (!location.is_empty()).then(|| ID(location.clone())),
                    rank: row.rank,
                    points: row.points,
                })
            })
            .collect();
        ranks.sort_by_key(|rank| Period::ALL.iter().position(|p| *p == rank.period));
        Ok(ranks)
    }

    /// Tier changes: enrolment, upgrades, grace periods, downgrades; oldest first.
    async fn tier_history(&self, ctx: &Context<'_>) -> QueryResult<Vec<TierChange>> {
        let rows = loaders(ctx).load_one(TierHistoryOf(self.key())).await?;
        Ok(rows.unwrap_or_default().into_iter().map(TierChange).collect())
    }

    /// The member's RFM segment changes, oldest first.
    async fn segment_history(&self, ctx: &Context<'_>) -> QueryResult<Vec<SegmentTransition>> {
        let rows = loaders(ctx).load_one(TransitionsOf(self.key())).await?;
        Ok(rows
            .unwrap_or_default()
            .into_iter()
            .map(SegmentTransition)
            .collect())
    }
}

/// A member's points.
pub struct Balance(pub BalanceRow);

/// A member's points.
#[Object]
impl Balance {
    /// Points available now (negative only while a refund's clawback is owed).
    async fn points(&self) -> i64 {
        self.0.balance
    }
    /// Points ever earned by purchases.
    async fn lifetime_earned(&self) -> i64 {
        self.0.lifetime_earned
    }
    /// Points spent on rewards.
    async fn redeemed(&self) -> i64 {
        self.0.redeemed
    }
    /// Points that expired.
    async fn expired(&self) -> i64 {
        self.0.expired
    }
    /// Points taken back by refunds.
    async fn clawed_back(&self) -> i64 {
        self.0.clawed_back
    }
    /// Net of manual adjustments.
    async fn adjusted(&self) -> i64 {
        self.0.adjusted
    }
    /// The points that expire next, and when; null if none do.
    async fn next_expiry(&self) -> Option<PointsExpiry> {
        Some(PointsExpiry {
            points: self.0.next_expiry_points?,
            date: self.0.next_expiry_at?,
        })
    }
}

/// Points expiring together.
#[derive(SimpleObject)]
pub struct PointsExpiry {
    /// How many points expire.
    pub points: i64,
    /// When they expire.
    pub date: DateTime<Utc>,
}

/// A member's tier and the way to the next one.
#[derive(SimpleObject)]
pub struct TierProgress {
    /// The tier held now.
    pub name: String,
    /// Its earn multiplier in basis points (10000 = 1.0×).
    pub multiplier_bps: i32,
    /// Points earned by purchases (net of clawbacks) in the qualification window ending now.
    pub qualifying_points: i64,
    /// The tier above, null at the top.
    pub next_tier: Option<String>,
    /// Qualifying points still needed for the next tier, null at the top.
    pub points_to_next: Option<i64>,
    /// Qualifying points missing to keep the current tier at the next re-evaluation (0 when
    /// it is safe).
    pub points_to_keep: Option<i64>,
    /// In a grace period: when the member is downgraded unless `pointsToKeep` is reached.
    pub keep_by: Option<DateTime<Utc>>,
    /// Whether the member is below the tier's threshold and in its grace period.
    pub in_grace: bool,
}

impl From<TierRow> for TierProgress {
    fn from(row: TierRow) -> Self {
        TierProgress {
            name: row.tier,
            multiplier_bps: row.multiplier_bps,
            qualifying_points: row.qualifying_points,
            next_tier: row.next_tier,
            points_to_next: row.points_to_next,
            points_to_keep: row.points_to_keep,
            keep_by: row.keep_by,
            in_grace: row.in_grace,
        }
    }
}

impl TierProgress {
    /// The entry tier of `program`, for a member with no tier row yet.
    fn entry(program: &FullProgram) -> Option<Self> {
        let first = program.tiers.first()?;
        let next = program.tiers.get(1);
        Some(TierProgress {
            name: first.name.clone(),
            multiplier_bps: first.multiplier_bps,
            qualifying_points: 0,
            next_tier: next.map(|t| t.name.clone()),
            points_to_next: next.map(|t| t.threshold_points),
            points_to_keep: Some(0),
            keep_by: None,
            in_grace: false,
        })
    }
}

/// RFM metrics and scores of a purchasing member, as of the last scoring.
pub struct Rfm(pub RfmRow);

/// RFM metrics and scores of a purchasing member, as of the last scoring.
#[Object]
impl Rfm {
    /// Days since the last purchase.
    async fn recency_days(&self) -> i32 {
        self.0.recency_days
    }
    /// Purchases in the last 365 days.
    async fn frequency(&self) -> i32 {
        self.0.frequency
    }
    /// Spend of those purchases minus their refunds, in minor units.
    async fn monetary_minor(&self) -> i64 {
        self.0.monetary_minor
    }
    /// Recency score, 1–5 (5: most recent).
    async fn r(&self) -> i32 {
        i32::from(self.0.r)
    }
    /// Frequency score, 1–5.
    async fn f(&self) -> i32 {
        i32::from(self.0.f)
    }
    /// Monetary score, 1–5 (shown, not used by the segment).
    async fn m(&self) -> i32 {
        i32::from(self.0.m)
    }
    /// The segment of the (R, F) cell.
    async fn segment(&self) -> &str {
        &self.0.segment
    }
    /// When the scores were computed.
    async fn computed_at(&self) -> DateTime<Utc> {
        self.0.computed_at
    }
}

/// A member's progress on one stamp card.
pub struct StampCard(pub StampCardRow);

/// A member's progress on one stamp card.
#[Object]
impl StampCard {
    async fn card_id(&self) -> &str {
        &self.0.card_id
    }
    /// The card's name; null if the program no longer has the card.
    async fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }
    /// Stamps on the current card.
    async fn stamps(&self) -> i32 {
        self.0.stamps
    }
    /// Stamps that fill a card.
    async fn stamps_required(&self) -> i32 {
        self.0.stamps_required
    }
    /// Cards filled so far.
    async fn cards_completed(&self) -> i32 {
        self.0.cards_completed
    }
    /// Rewards issued for full cards (one per card).
    async fn rewards_issued(&self) -> i32 {
        self.0.cards_completed
    }
    /// The reward a full card issues.
    async fn reward_id(&self) -> Option<&str> {
        self.0.reward_id.as_deref()
    }
}

/// An entry of the rewards catalogue.
pub struct Reward(pub RewardRow);

/// An entry of the rewards catalogue.
#[Object]
impl Reward {
    async fn reward_id(&self) -> &str {
        &self.0.reward_id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Points a redemption costs.
    async fn points_cost(&self) -> i64 {
        self.0.points_cost
    }
    /// Whether it can be redeemed.
    async fn active(&self) -> bool {
        self.0.active
    }
}

/// One event of a member's history.
#[derive(SimpleObject)]
pub struct HistoryEntry {
    /// Position in the member's event log.
    pub sequence: i64,
    /// `PurchaseRecorded`, `PurchaseRefunded`, `RewardRedeemed`, `PointsAdjusted`,
    /// `PointsExpired`, `TierUpgraded`, `StampCollected`, ...
    pub event_type: String,
    /// When it happened in business time (the receipt's time for a purchase).
    pub occurred_at: DateTime<Utc>,
    /// When it was recorded.
    pub committed_at: DateTime<Utc>,
    /// Points it moved: positive earned or granted, negative redeemed, expired or clawed back.
    pub points_delta: i64,
    /// The balance right after it, for events that move points.
    pub balance_after: Option<i64>,
    /// The POS transaction of a purchase, refund or stamp.
    pub transaction_id: Option<String>,
    pub location_id: Option<String>,
    /// Amount of a purchase or refund, in minor units.
    pub amount_minor: Option<i64>,
    pub reward_id: Option<String>,
    /// The reason of a manual adjustment.
    pub reason: Option<String>,
    /// The tier after a tier event.
    pub tier: Option<String>,
}

impl From<EventRow> for HistoryEntry {
    fn from(row: EventRow) -> Self {
        let mut entry = HistoryEntry {
            sequence: row.sequence,
            event_type: row.event_type,
            occurred_at: occurred_at(&row.event).unwrap_or(row.committed_at),
            committed_at: row.committed_at,
            points_delta: domain::ledger::points_delta(&row.event),
            balance_after: balance_after(&row.event),
            transaction_id: None,
            location_id: None,
            amount_minor: None,
            reward_id: None,
            reason: None,
            tier: None,
        };
        match row.event {
            MemberEvent::MemberEnrolled { tier, .. } => entry.tier = Some(tier),
            MemberEvent::PurchaseRecorded {
                transaction_id,
                location_id,
                amount_minor,
                ..
            } => {
                entry.transaction_id = Some(transaction_id);
                entry.location_id = Some(location_id);
                entry.amount_minor = Some(amount_minor);
            }
            MemberEvent::PurchaseRefunded {
                transaction_id,
                location_id,
                amount_minor,
                ..
            } => {
                entry.transaction_id = Some(transaction_id);
                entry.location_id = Some(location_id);
                entry.amount_minor = Some(amount_minor);
            }
            MemberEvent::StampCollected { transaction_id, .. } => entry.transaction_id = Some(transaction_id),
            MemberEvent::StampCardCompleted {
                transaction_id,
                reward_id,
                ..
            } => {
                entry.transaction_id = Some(transaction_id);
                entry.reward_id = Some(reward_id);
            }
            MemberEvent::RewardRedeemed { reward_id, .. } => entry.reward_id = Some(reward_id),
            MemberEvent::PointsAdjusted { reason, .. } => entry.reason = Some(reason),
            MemberEvent::TierUpgraded { to, .. } | MemberEvent::TierDowngraded { to, .. } => {
                entry.tier = Some(to)
            }
            MemberEvent::TierGracePeriodStarted { tier, .. }
            | MemberEvent::TierGracePeriodCleared { tier, .. } => entry.tier = Some(tier),
            MemberEvent::PointsExpired { .. } => {}
        }
        entry
    }
}

/// Business time of an event.
fn occurred_at(event: &MemberEvent) -> Option<DateTime<Utc>> {
    Some(match event {
        MemberEvent::MemberEnrolled { enrolled_at, .. } => *enrolled_at,
        MemberEvent::PurchaseRecorded { occurred_at, .. }
        | MemberEvent::StampCollected { occurred_at, .. }
        | MemberEvent::StampCardCompleted { occurred_at, .. }
        | MemberEvent::TierUpgraded { occurred_at, .. }
        | MemberEvent::PurchaseRefunded { occurred_at, .. }
        | MemberEvent::RewardRedeemed { occurred_at, .. }
        | MemberEvent::PointsAdjusted { occurred_at, .. } => *occurred_at,
        MemberEvent::TierGracePeriodStarted { as_of, .. }
        | MemberEvent::TierGracePeriodCleared { as_of, .. }
        | MemberEvent::TierDowngraded { as_of, .. }
        | MemberEvent::PointsExpired { as_of, .. } => *as_of,
    })
}

/// The balance an event leaves, for events that move points.
pub fn balance_after(event: &MemberEvent) -> Option<i64> {
    match event {
        MemberEvent::PurchaseRecorded { balance_after, .. }
        | MemberEvent::PurchaseRefunded { balance_after, .. }
        | MemberEvent::RewardRedeemed { balance_after, .. }
        | MemberEvent::PointsAdjusted { balance_after, .. }
        | MemberEvent::PointsExpired { balance_after, .. } => Some(*balance_after),
        _ => None,
    }
}

/// A member's place on one board.
#[derive(SimpleObject)]
pub struct LeaderboardRank {
    pub period: Period,
    /// The period's key: `2025-W03`, `2025-01` or `all`.
    pub period_key: String,
    /// The board's location; null for the org-wide board.
    pub location_id: Option<ID>,
    /// Standard competition rank (1, 2, 2, 4).
    pub rank: i64,
    /// Points earned in the period (clawbacks subtract, redemptions do not).
    pub points: i64,
}

/// A line of a leaderboard.
#[derive(SimpleObject)]
pub struct LeaderboardEntry {
    /// Standard competition rank (1, 2, 2, 4); equal points are listed in the order they were
    /// reached.
    pub rank: i64,
    pub member_id: ID,
    /// The member's chosen display name, or a stable pseudonym; never contact details.
    pub display_name: String,
    /// Points earned in the period.
    pub points: i64,
}

impl From<LeaderboardRow> for LeaderboardEntry {
    fn from(row: LeaderboardRow) -> Self {
        LeaderboardEntry {
            rank: row.rank,
            member_id: ID(row.member_id.to_string()),
            display_name: row.display_name,
            points: row.points,
        }
    }
}

/// Members in one RFM segment.
#[derive(SimpleObject)]
pub struct SegmentCount {
    pub segment: String,
    pub count: i64,
}

/// Members in one cell of the R × F grid.
#[derive(SimpleObject)]
pub struct RfmCell {
    /// Recency score, 1–5.
    pub r: i32,
    /// Frequency score, 1–5.
    pub f: i32,
    /// The segment the cell belongs to.
    pub segment: String,
    pub count: i64,
}

/// Members holding one tier.
#[derive(SimpleObject)]
pub struct TierCount {
    pub tier: String,
    pub count: i64,
}

/// What the org owes its members.
#[derive(SimpleObject)]
pub struct Liability {
    /// Outstanding points: the sum of all member balances.
    pub points: i64,
}

/// A member's move from one RFM segment to another.
pub struct SegmentTransition(pub TransitionRow);

/// A member's move from one RFM segment to another.
#[Object]
impl SegmentTransition {
    async fn member_id(&self) -> ID {
        ID(self.0.member_id.to_string())
    }
    /// The member who moved.
    async fn member(&self, ctx: &Context<'_>) -> QueryResult<Option<Member>> {
        let key = MemberKey {
            org_id: self.0.org_id.clone(),
            member_id: self.0.member_id,
        };
        Ok(loaders(ctx)
            .load_one(DirectoryOf(key))
            .await?
            .map(|row| Member { row }))
    }
    /// The segment before; null for the member's first scoring.
    async fn from(&self) -> Option<&str> {
        self.0.from_segment.as_deref()
    }
    /// The segment after.
    async fn to(&self) -> &str {
        &self.0.to_segment
    }
    /// When the scoring that moved the member ran.
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
}

/// A change of a member's tier standing.
pub struct TierChange(pub TierChangeRow);

/// A change of a member's tier standing.
#[Object]
impl TierChange {
    /// `ENROLLED`, `UPGRADED`, `GRACE_STARTED`, `GRACE_CLEARED` or `DOWNGRADED`.
    async fn change(&self) -> String {
        self.0.change.to_uppercase()
    }
    async fn from_tier(&self) -> Option<&str> {
        self.0.from_tier.as_deref()
    }
    async fn to_tier(&self) -> &str {
        &self.0.to_tier
    }
    /// Qualifying points at the change.
    async fn qualifying_points(&self) -> i64 {
        self.0.qualifying_points
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    /// For a grace period: when the downgrade becomes due.
    async fn downgrade_after(&self) -> Option<DateTime<Utc>> {
        self.0.downgrade_after
    }
}

/// An org's program: what members earn and can redeem.
pub struct Program(pub FullProgram);

/// An org's program: what members earn and can redeem.
#[Object]
impl Program {
    /// Bumped by every change of the program.
    async fn version(&self) -> i64 {
        self.0.program.version
    }
    /// ISO-4217 currency of purchases.
    async fn currency(&self) -> &str {
        &self.0.program.currency
    }
    /// Whole points per whole currency unit, before the tier multiplier.
    async fn earn_rate(&self) -> i64 {
        self.0.program.earn_rate
    }
    /// Days after which earned points expire; null: never.
    async fn expiry_days(&self) -> Option<i32> {
        self.0.program.expiry_days
    }
    /// Rolling window of tier qualification, in days.
    async fn qualification_window_days(&self) -> i32 {
        self.0.program.qualification_window_days
    }
    /// The tier ladder, lowest first.
    async fn tiers(&self) -> Vec<ProgramTier> {
        self.0
            .tiers
            .iter()
            .map(|tier| ProgramTier {
                name: tier.name.clone(),
                threshold_points: tier.threshold_points,
                multiplier_bps: tier.multiplier_bps,
            })
            .collect()
    }
    /// The rewards catalogue, cheapest first (inactive rewards included).
    async fn rewards(&self) -> Vec<Reward> {
        self.0.rewards.iter().cloned().map(Reward).collect()
    }
    /// The stamp cards.
    async fn stamp_cards(&self) -> Vec<StampCardDefinition> {
        self.0
            .stamp_cards
            .iter()
            .cloned()
            .map(StampCardDefinition)
            .collect()
    }
    /// When the current version was configured.
    async fn configured_at(&self) -> DateTime<Utc> {
        self.0.program.configured_at
    }
}

/// A rung of the tier ladder.
#[derive(SimpleObject)]
pub struct ProgramTier {
    pub name: String,
    /// Qualifying points needed.
    pub threshold_points: i64,
    /// Earn multiplier in basis points (10000 = 1.0×).
    pub multiplier_bps: i32,
}

/// A stamp card of the program.
pub struct StampCardDefinition(pub StampCardDefRow);

/// A stamp card of the program.
#[Object]
impl StampCardDefinition {
    async fn card_id(&self) -> &str {
        &self.0.card_id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn stamps_required(&self) -> i32 {
        self.0.stamps_required
    }
    /// The reward a full card issues.
    async fn reward_id(&self) -> &str {
        &self.0.reward_id
    }
    /// Smallest purchase that earns a stamp, in minor units.
    async fn min_amount_minor(&self) -> i64 {
        self.0.min_amount_minor
    }
}

/// Filters of a member list; all given conditions must hold.
#[derive(InputObject, Default)]
pub struct MemberFilter {
    /// Members in this RFM segment (one of the 11 names).
    pub segment: Option<String>,
    /// Members holding this tier.
    pub tier: Option<String>,
    /// Balance at least this.
    pub min_points: Option<i64>,
    /// Balance at most this.
    pub max_points: Option<i64>,
}

/// The order of a member list.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemberOrder {
    /// Oldest enrolment first.
    #[default]
    EnrolledAt,
    /// Highest balance first.
    PointsDesc,
}

/// A live update of a member, pushed after each of its events.
pub struct MemberUpdate {
    pub key: MemberKey,
    pub state: LiveState,
    pub event_type: Option<String>,
    pub points_delta: i64,
    pub committed_at: Option<DateTime<Utc>>,
}

/// A live update of a member, pushed after each of its events.
#[Object]
impl MemberUpdate {
    async fn member_id(&self) -> ID {
        ID(self.key.member_id.to_string())
    }
    /// The event that caused the update; null for the current state sent on subscribing with
    /// `includeCurrent`.
    async fn event_type(&self) -> Option<&str> {
        self.event_type.as_deref()
    }
    /// The member's event sequence the update reflects.
    async fn sequence(&self) -> i64 {
        self.state.sequence
    }
    /// When that event was recorded.
    async fn committed_at(&self) -> Option<DateTime<Utc>> {
        self.committed_at
    }
    /// Points the event moved.
    async fn points_delta(&self) -> i64 {
        self.points_delta
    }
    /// The balance after the event.
    async fn points(&self) -> i64 {
        self.state.points
    }
    /// The tier after the event.
    async fn tier(&self) -> &str {
        &self.state.tier
    }
    /// Its multiplier in basis points.
    async fn multiplier_bps(&self) -> i64 {
        i64::from(self.state.multiplier_bps)
    }
    /// Qualifying points as of the latest event that stated them.
    async fn qualifying_points(&self) -> Option<i64> {
        self.state.qualifying_points
    }
    /// The member's full view from the read models, which may lag the update by the
    /// projector's delay.
    async fn member(&self, ctx: &Context<'_>) -> QueryResult<Option<Member>> {
        Ok(loaders(ctx)
            .load_one(DirectoryOf(self.key.clone()))
            .await?
            .map(|row| Member { row }))
    }
}

/// A member's balance and tier as its events state them, folded in sequence order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveState {
    pub sequence: i64,
    pub points: i64,
    pub tier: String,
    pub multiplier_bps: u32,
    pub qualifying_points: Option<i64>,
}

impl LiveState {
    /// Applies the event at `sequence`; an event at or before the state's sequence (already
    /// folded in) is ignored and `false` returned.
    pub fn apply(&mut self, sequence: i64, event: &MemberEvent) -> bool {
        if sequence <= self.sequence {
            return false;
        }
        self.sequence = sequence;
        if let Some(points) = balance_after(event) {
            self.points = points;
        }
        match event {
            MemberEvent::MemberEnrolled {
                tier, multiplier_bps, ..
            }
            | MemberEvent::PurchaseRecorded {
                tier, multiplier_bps, ..
            } => {
                self.tier.clone_from(tier);
                self.multiplier_bps = *multiplier_bps;
            }
            MemberEvent::TierUpgraded {
                to, multiplier_bps, ..
            }
            | MemberEvent::TierDowngraded {
                to, multiplier_bps, ..
            } => {
                self.tier.clone_from(to);
                self.multiplier_bps = *multiplier_bps;
            }
            _ => {}
        }
        match event {
            MemberEvent::PurchaseRecorded {
                qualifying_points, ..
            }
            | MemberEvent::PurchaseRefunded {
                qualifying_points, ..
            }
            | MemberEvent::TierUpgraded {
                qualifying_points, ..
            }
            | MemberEvent::TierDowngraded {
                qualifying_points, ..
            }
            | MemberEvent::TierGracePeriodStarted {
                qualifying_points, ..
            }
            | MemberEvent::TierGracePeriodCleared {
                qualifying_points, ..
            } => self.qualifying_points = Some(*qualifying_points),
            _ => {}
        }
        true
    }

    /// The state the log gives, from the member's latest event of each state-bearing kind in
    /// ascending sequence order ([`Db::latest_state_events`]): each field ends up with the value
    /// of the latest event stating it.
    pub fn from_events(events: &[EventRow]) -> Self {
        let mut state = LiveState::default();
        for row in events {
            state.apply(row.sequence, &row.event);
        }
        state
    }

    /// The update pushed for `event`, or `None` if it was already folded in.
    pub fn update(&mut self, key: &MemberKey, event: &LiveEvent) -> Option<MemberUpdate> {
        self.apply(event.sequence, &event.event).then(|| MemberUpdate {
            key: key.clone(),
            state: self.clone(),
            event_type: Some(event.event.type_name().to_owned()),
            points_delta: domain::ledger::points_delta(&event.event),
            committed_at: Some(event.committed_at),
        })
    }
}

/// Checks a segment name.
pub fn check_segment(argument: &str, segment: &str) -> QueryResult<()> {
    if SEGMENTS.contains(&segment) {
        Ok(())
    } else {
        Err(QueryError::bad_input(format!(
            "{argument}: unknown segment '{segment}'; expected one of: {}",
            SEGMENTS.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_is_a_complete_partition_into_11_segments() {
        let mut seen = std::collections::BTreeSet::new();
        for r in 1..=5 {
            for f in 1..=5 {
                let segment = segment_of(r, f);
                assert!(SEGMENTS.contains(&segment), "{segment}");
                seen.insert(segment);
            }
        }
        assert_eq!(seen.len(), 11);
        assert_eq!(segment_of(5, 5), "Champions");
        assert_eq!(segment_of(1, 1), "Lost");
        assert_eq!(segment_of(2, 5), "Can't Lose Them");
        assert_eq!(segment_of(3, 3), "Need Attention");
    }
}
