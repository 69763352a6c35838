//! A member: the root of every per-member read model.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Object, ID};
use chrono::{DateTime, Utc};
use domain::ids::MemberKey;
use domain::member::earn::{active_promotions, EarnHistory};

use super::{db, loaders};
use super::{
    AchievementProgress, Badge, Balance, HistoryEntry, LeaderboardRank, Period, Promotion, Reward, Rfm,
    SegmentTransition, StampCard,
};
use super::{TierChange, TierProgress};
use crate::auth::MemberGuard;
use crate::cursor;
use crate::db::MemberRow;
use crate::error::QueryResult;
use crate::loaders::{
    AchievementsOf, BalanceOf, BudgetsOf, ProgramOf, PromotionHistoryOf, RanksOf, RfmOf, StampCardsOf,
    TierHistoryOf, TierOf, TransitionsOf,
};

/// A loyalty member of an org.
pub struct Member {
    pub row: MemberRow,
}

impl Member {
    /// The member a top-level field answers with, noted for the card cache.
    pub fn read(ctx: &Context<'_>, row: MemberRow) -> Self {
        crate::card_cache::MemberReads::note(ctx, row.key());
        Member { row }
    }

    fn key(&self) -> MemberKey {
        self.row.key()
    }
}

/// A loyalty member of an org.
// Every field checks that the caller may read this member, whatever path the query took here
// (a customer token: only its own member).
#[Object(guard = "MemberGuard(&self.row)")]
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
        if let Some(row) = loaders(ctx).load_one(TierOf(self.key())).await?.flatten() {
            return Ok(TierProgress::from(row));
        }
        // Enrolled but not yet projected into the tier model: the program's entry tier.
        let program = loaders(ctx).load_one(ProgramOf(self.row.org_id.clone())).await?;
        program.as_ref().and_then(TierProgress::entry).ok_or_else(|| {
            anyhow::anyhow!("member {} has no tier and its org no program", self.row.member_id).into()
        })
    }

    /// RFM metrics (live, from the member's first purchase on) and scores; null until the member
    /// has purchased and its org has been scored once (the projector scores a new org right
    /// after its first purchases).
    async fn rfm(&self, ctx: &Context<'_>) -> QueryResult<Option<Rfm>> {
        Ok(loaders(ctx).load_one(RfmOf(self.key())).await?.flatten().map(Rfm))
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

    /// The promotions that would apply to a purchase by this member now, at any of the org's
    /// locations, whatever the amount and the basket: those running now (dates and schedule in
    /// the program's time zone) whose tier, first-purchase and inactivity conditions the member
    /// meets, with uses left under the per-member limit and budget left. In the program's order.
    async fn active_promotions(&self, ctx: &Context<'_>) -> QueryResult<Vec<Promotion>> {
        let loaders = loaders(ctx);
        let org = self.row.org_id.clone();
        let (program, tier, history, budgets) = futures::try_join!(
            loaders.load_one(ProgramOf(org.clone())),
            loaders.load_one(TierOf(self.key())),
            loaders.load_one(PromotionHistoryOf(self.key())),
            loaders.load_one(BudgetsOf(org)),
        )?;
        let Some(program) = program else {
            return Ok(Vec::new());
        };
        // A member not yet in the tier model is in the program's entry tier.
        let tier = tier
            .flatten()
            .map(|row| row.tier)
            .or_else(|| program.tiers.first().map(|t| t.name.clone()))
            .unwrap_or_default();
        let history = history.unwrap_or_default();
        let history = EarnHistory::rebuilt(
            history.last_purchase_at,
            history
                .uses
                .0
                .into_iter()
                .map(|u| (u.promotion_id, u.occurred_at)),
        );
        let budgets = budgets.unwrap_or_default();
        Ok(
            active_promotions(&program.config, &tier, &history, &budgets, Utc::now())
                .into_iter()
                .cloned()
                .map(Promotion)
                .collect(),
        )
    }

    /// The badges the member unlocked, oldest first (never taken back).
    async fn badges(&self, ctx: &Context<'_>) -> QueryResult<Vec<Badge>> {
        let rows = loaders(ctx)
            .load_one(AchievementsOf(self.key()))
            .await?
            .unwrap_or_default();
        let mut badges: Vec<Badge> = rows.iter().filter_map(Badge::of).collect();
        badges.sort_by_key(|b| b.unlocked_at);
        Ok(badges)
    }

    /// Progress toward each achievement of the program, in its order ("7 of 10 purchases"),
    /// unlocked ones included.
    async fn achievements(&self, ctx: &Context<'_>) -> QueryResult<Vec<AchievementProgress>> {
        let loaders = loaders(ctx);
        let (program, rows) = futures::try_join!(
            loaders.load_one(ProgramOf(self.row.org_id.clone())),
            loaders.load_one(AchievementsOf(self.key())),
        )?;
        let rows = rows.unwrap_or_default();
        Ok(program
            .map(|p| p.config.achievements)
            .unwrap_or_default()
            .iter()
            .map(|a| AchievementProgress::of(a, rows.iter().find(|r| r.achievement_id == a.achievement_id)))
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
        let rows = db(ctx)
            .history(&self.key(), before, points_only, limit + 1)
            .await?;
        let (rows, has_next) = cursor::page(rows, limit);
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
