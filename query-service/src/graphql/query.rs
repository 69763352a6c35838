//! The query root: every read of the read models, guarded per org.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Object, ID};
use chrono::{DateTime, Utc};
use domain::ids::MemberKey;
use domain::rfm::{self, Segment};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::parse_member_id;
use crate::auth::{Access, Caller, OrgGuard, NOT_YOUR_MEMBER};
use crate::cursor::{self, DEFAULT_PAGE};
use crate::db::{self, MemberAfter, MemberSort, PeriodKeys};
use crate::error::{QueryError, QueryResult};
use crate::loaders::{self, DirectoryOf, ProgramOf};
use crate::types::{
    check_segment, liability_days, start_of, window_start, AchievementStats, LeaderboardEntry, Liability,
    LiabilityDay, Member, MemberFilter, MemberOrder, NearUnlock, Period, Program, PromotionStats, RfmCell,
    SegmentCount, SegmentTransition, SegmentTransitionCount, Simulation, TierCount,
};
use common::customer_token::Customer;

/// Entries of a leaderboard when `first` is not given (SPEC §8: `first: Int = 10`).
const LEADERBOARD_DEFAULT: i32 = 10;

/// Read-only queries of the loyalty read models.
pub struct QueryRoot;

/// Read-only queries of the loyalty read models. Every field names the org it reads; list
/// fields take `first` (page size, 1 to 100) and, when paged, `after` (the `endCursor` of the
/// previous page).
#[Object(name = "Query")]
impl QueryRoot {
    /// A member, named by `memberId` or by `externalId` (exactly one); null if the org has no
    /// such member. Storefront and analyst keys; a customer token for its own member only
    /// (naming any other member, existing or not, is refused alike).
    #[graphql(guard = "OrgGuard::new(Access::Member, &org_id)")]
    async fn member(
        &self,
        ctx: &Context<'_>,
        org_id: ID,
        member_id: Option<ID>,
        external_id: Option<String>,
    ) -> QueryResult<Option<Member>> {
        let db = crate::types::db(ctx);
        let caller = ctx.data_opt::<Caller>().unwrap_or(&Caller::Anonymous);
        let names_own = caller.customer().map(|customer| {
            member_id.as_ref().map(|id| id.as_str()) == Some(customer.subject.as_str())
                || external_id.as_deref() == Some(customer.subject.as_str())
        });
        let row = match (member_id, external_id) {
            (Some(member_id), None) => {
                // Through the loader: many aliased `member` fields in one request batch up.
                let key = MemberKey {
                    org_id: org_id.0.clone(),
                    member_id: parse_member_id("memberId", &member_id)?,
                };
                let loaders = ctx.data_unchecked::<loaders::Loaders>();
                // The member and every read model its selection asks for, in one statement;
                // not for a customer naming another member, who is refused below.
                if names_own != Some(false) {
                    let keys = std::slice::from_ref(&key);
                    loaders::prefetch_members(loaders, &ctx.look_ahead(), keys)
                        .await?
                        .remove(&key)
                } else {
                    loaders.load_one(DirectoryOf(key)).await?
                }
            }
            (None, Some(external_id)) => db.member_by_external_id(&org_id, &external_id).await?,
            _ => {
                return Err(QueryError::bad_input(
                    "member: give exactly one of `memberId` and `externalId`",
                ))
            }
        };
        match (names_own, row) {
            (None, row) => Ok(row.map(|row| Member::read(ctx, row))),
            // A customer: its own member, or null when the token's own name is not (yet) known.
            (Some(_), Some(row)) if caller.may_read(&row) => Ok(Some(Member::read(ctx, row))),
            (Some(true), None) => Ok(None),
            (Some(_), _) => Err(QueryError::forbidden(NOT_YOUR_MEMBER)),
        }
    }

    /// The customer's own member, as the customer token (`X-Customer-Token`, with the org's
    /// publishable key) names it; null while the org does not know that member yet.
    #[graphql(guard = "OrgGuard::new(Access::Customer, &org_id)")]
    async fn me(&self, ctx: &Context<'_>, org_id: ID) -> QueryResult<Option<Member>> {
        let caller = ctx.data_opt::<Caller>().unwrap_or(&Caller::Anonymous);
        let Some(customer) = caller.customer() else {
            return Err(QueryError::forbidden("`me` requires a customer token"));
        };
        Ok(customer_member(ctx, &org_id, customer)
            .await?
            .map(|row| Member::read(ctx, row)))
    }

    /// The current board of a period (the week, month containing now, or all time), org-wide
    /// or of one location: the top `first` members, by display name or pseudonym. Public:
    /// storefront, analyst and publishable keys.
    #[graphql(
        guard = "OrgGuard::new(Access::Public, &org_id)",
        complexity = "cursor::list_complexity(first.unwrap_or(LEADERBOARD_DEFAULT), child_complexity)"
    )]
    async fn leaderboard(
        &self,
        ctx: &Context<'_>,
        org_id: ID,
        period: Period,
        location_id: Option<ID>,
        #[graphql(default = 10)] first: Option<i32>,
    ) -> QueryResult<Vec<LeaderboardEntry>> {
        let limit = cursor::page_size("first", first.unwrap_or(LEADERBOARD_DEFAULT))?;
        let keys = PeriodKeys::at(Utc::now());
        let period_key = match period {
            Period::Week => keys.week.as_str(),
            Period::Month => keys.month.as_str(),
            Period::AllTime => "all",
        };
        let location = location_id.map(|id| id.0).unwrap_or_default();
        let rows = crate::types::db(ctx)
            .leaderboard(&org_id, &location, period.as_db(), period_key, limit)
            .await?;
        Ok(rows.into_iter().map(LeaderboardEntry::from).collect())
    }

    /// The org's program in force: tiers, rewards, stamp cards, promotions. Null until it is
    /// configured. Public: storefront, analyst and publishable keys.
    #[graphql(guard = "OrgGuard::new(Access::Public, &org_id)")]
    async fn program(&self, ctx: &Context<'_>, org_id: ID) -> QueryResult<Option<Program>> {
        let program = ctx
            .data_unchecked::<loaders::Loaders>()
            .load_one(ProgramOf(org_id.0))
            .await?;
        Ok(program.map(Program))
    }

    /// Members per RFM segment, all 11 segments in grid order (best first). Analyst keys.
    #[graphql(guard = "OrgGuard::new(Access::Analyst, &org_id)")]
    async fn segment_counts(&self, ctx: &Context<'_>, org_id: ID) -> QueryResult<Vec<SegmentCount>> {
        let counts = crate::types::db(ctx).segment_counts(&org_id).await?;
        Ok(Segment::ALL
            .iter()
            .map(|segment| SegmentCount {
                segment: segment.name().to_owned(),
                count: counts.get(segment.name()).copied().unwrap_or(0),
            })
            .collect())
    }

    /// Members per cell of the R × F grid: all 25 cells, R from 5 down, F from 1 up.
    /// Analyst keys.
    #[graphql(guard = "OrgGuard::new(Access::Analyst, &org_id)")]
    async fn rfm_grid(&self, ctx: &Context<'_>, org_id: ID) -> QueryResult<Vec<RfmCell>> {
        let counts = crate::types::db(ctx).rfm_grid(&org_id).await?;
        Ok((1..=5_u8)
            .rev()
            .flat_map(|r| (1..=5_u8).map(move |f| (r, f)))
            .map(|(r, f)| RfmCell {
                r: i32::from(r),
                f: i32::from(f),
                segment: rfm::segment(r, f).name().to_owned(),
                count: counts.get(&(i16::from(r), i16::from(f))).copied().unwrap_or(0),
            })
            .collect())
    }

    /// Members per tier, the program's ladder from the bottom (empty tiers included).
    /// Analyst keys.
    #[graphql(guard = "OrgGuard::new(Access::Analyst, &org_id)")]
    async fn tier_distribution(&self, ctx: &Context<'_>, org_id: ID) -> QueryResult<Vec<TierCount>> {
        let rows = crate::types::db(ctx).tier_distribution(&org_id).await?;
        Ok(rows
            .into_iter()
            .map(|(tier, count)| TierCount { tier, count })
            .collect())
    }

    /// What each promotion awarded: uses, points (after the earn cap, gross of later refunds'
    /// clawbacks), distinct members, budget left, and per UTC day. Every promotion of the
    /// program, in its order, then those removed from it that were used. Analyst keys.
    #[graphql(guard = "OrgGuard::new(Access::Analyst, &org_id)")]
    async fn promotion_stats(&self, ctx: &Context<'_>, org_id: ID) -> QueryResult<Vec<PromotionStats>> {
        let rows = crate::types::db(ctx).promotion_stats(&org_id).await?;
        Ok(rows.into_iter().map(PromotionStats::from).collect())
    }

    /// How each achievement is doing: its funnel (members started, half way, close, unlocked)
    /// and unlocks per ISO week. Every achievement of the program, in its order, then those
    /// removed from it that some member progressed on. Analyst keys.
    #[graphql(guard = "OrgGuard::new(Access::Analyst, &org_id)")]
    async fn achievement_stats(&self, ctx: &Context<'_>, org_id: ID) -> QueryResult<Vec<AchievementStats>> {
        let db = crate::types::db(ctx);
        let (program, funnels, weeks) = futures::try_join!(
            ctx.data_unchecked::<loaders::Loaders>()
                .load_one(ProgramOf(org_id.0.clone())),
            db.achievement_funnels(&org_id),
            db.achievement_unlocks(&org_id),
        )?;
        let achievements = program.map(|p| p.config.achievements).unwrap_or_default();
        let mut stats: Vec<AchievementStats> = achievements
            .iter()
            .map(|a| {
                let funnel = funnels.iter().find(|f| f.achievement_id == a.achievement_id);
                AchievementStats::of(&a.achievement_id, Some(a), funnel, &weeks)
            })
            .collect();
        for funnel in funnels
            .iter()
            .filter(|f| !achievements.iter().any(|a| a.achievement_id == f.achievement_id))
        {
            stats.push(AchievementStats::of(
                &funnel.achievement_id,
                None,
                Some(funnel),
                &weeks,
            ));
        }
        Ok(stats)
    }

    /// Members who have not unlocked `achievementId` yet and reached at least `minProgress`
    /// (0 to 1, default 0.8) of its target, closest first. Analyst keys.
    #[graphql(guard = "OrgGuard::new(Access::Analyst, &org_id)")]
    async fn members_close_to_unlocking(
        &self,
        ctx: &Context<'_>,
        org_id: ID,
        achievement_id: ID,
        #[graphql(default = 0.8)] min_progress: f64,
        #[graphql(default = 20)] first: i32,
    ) -> QueryResult<Vec<NearUnlock>> {
        if !(0.0..=1.0).contains(&min_progress) {
            return Err(QueryError::bad_input("minProgress: must be between 0 and 1"));
        }
        let first = cursor::page_size("first", first)?;
        let rows = crate::types::db(ctx)
            .near_unlock(&org_id, &achievement_id, min_progress, first)
            .await?;
        Ok(rows.into_iter().map(NearUnlock::from).collect())
    }

    /// The org's what-if simulations, newest first (SPEC §9). Analyst keys.
    #[graphql(guard = "OrgGuard::new(Access::Analyst, &org_id)")]
    async fn simulations(
        &self,
        ctx: &Context<'_>,
        org_id: ID,
        #[graphql(default = 20)] first: i32,
    ) -> QueryResult<Vec<Simulation>> {
        let first = cursor::page_size("first", first)?;
        let rows = crate::types::db(ctx).simulations(&org_id, first).await?;
        Ok(rows.into_iter().map(Simulation).collect())
    }

    /// The points the org owes its members. Analyst keys.
    #[graphql(guard = "OrgGuard::new(Access::Analyst, &org_id)")]
    async fn liability(&self, ctx: &Context<'_>, org_id: ID) -> QueryResult<Liability> {
        let points = crate::types::db(ctx).liability(&org_id).await?;
        Ok(Liability { points })
    }

    /// The org's liability at the end of each UTC day of the last `days` days (today
    /// included, 1 to 731), oldest first, every day listed. Analyst keys.
    #[graphql(guard = "OrgGuard::new(Access::Analyst, &org_id)")]
    async fn liability_history(
        &self,
        ctx: &Context<'_>,
        org_id: ID,
        #[graphql(default = 90)] days: i32,
    ) -> QueryResult<Vec<LiabilityDay>> {
        let today = Utc::now().date_naive();
        let first = window_start("days", today, days)?;
        let moves = crate::types::db(ctx)
            .liability_moves(&org_id, start_of(first))
            .await?;
        liability_days(&moves, first, today)
    }

    /// Members who moved between RFM segments on each UTC day of the last `days` days (today
    /// included, 1 to 731), per move, oldest day first. Analyst keys.
    #[graphql(guard = "OrgGuard::new(Access::Analyst, &org_id)")]
    async fn segment_transition_counts(
        &self,
        ctx: &Context<'_>,
        org_id: ID,
        #[graphql(default = 30)] days: i32,
    ) -> QueryResult<Vec<SegmentTransitionCount>> {
        let first = window_start("days", Utc::now().date_naive(), days)?;
        let rows = crate::types::db(ctx)
            .transition_counts(&org_id, start_of(first))
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// The org's members, filtered and paged (keyset: every member is listed exactly once
    /// across pages, also while members enrol). Analyst keys.
    #[graphql(
        guard = "OrgGuard::new(Access::Analyst, &org_id)",
        complexity = "cursor::list_complexity(first.unwrap_or(DEFAULT_PAGE), child_complexity)"
    )]
    async fn members(
        &self,
        ctx: &Context<'_>,
        org_id: ID,
        filter: Option<MemberFilter>,
        #[graphql(default)] order_by: MemberOrder,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> QueryResult<Connection<String, Member>> {
        let limit = cursor::page_size("first", first.unwrap_or(DEFAULT_PAGE))?;
        let filter = filter.unwrap_or_default();
        if let Some(segment) = &filter.segment {
            check_segment("filter.segment", segment)?;
        }
        if let (Some(min), Some(max)) = (filter.min_points, filter.max_points) {
            if min > max {
                return Err(QueryError::bad_input(format!(
                    "filter: minPoints ({min}) is greater than maxPoints ({max})"
                )));
            }
        }
        let sort = match order_by {
            MemberOrder::EnrolledAt => MemberSort::EnrolledAt,
            MemberOrder::PointsDesc => MemberSort::PointsDesc,
        };
        let after = cursor::decode::<MemberCursor>(after.as_deref())?
            .map(|cursor| cursor.into_after(sort))
            .transpose()?;
        let db_filter = db::MemberFilter {
            segment: filter.segment,
            tier: filter.tier,
            min_points: filter.min_points,
            max_points: filter.max_points,
        };
        let rows = crate::types::db(ctx)
            .member_page(&org_id, &db_filter, sort, after.as_ref(), limit + 1)
            .await?;
        let (rows, has_next) = cursor::page(rows, limit);
        let keys: Vec<MemberKey> = rows.iter().map(|row| row.member.key()).collect();
        let loaders = ctx.data_unchecked::<loaders::Loaders>();
        // The page is the directory of its members: nested references to them need no query.
        loaders
            .feed_many(
                rows.iter()
                    .map(|row| (DirectoryOf(row.member.key()), row.member.clone())),
            )
            .await;
        let node = ctx.look_ahead().field("edges").field("node");
        loaders::prefetch(loaders, &node, &keys).await?;
        let mut connection = Connection::new(after.is_some(), has_next);
        connection.edges = rows
            .into_iter()
            .map(|row| {
                let cursor = MemberCursor::of(sort, &row);
                Edge::new(cursor::encode(cursor), Member { row: row.member })
            })
            .collect();
        Ok(connection)
    }

    /// Members' moves between RFM segments in `[since, until)`, oldest first, optionally only
    /// those into or out of `segment`. Analyst keys.
    #[graphql(
        guard = "OrgGuard::new(Access::Analyst, &org_id)",
        complexity = "cursor::list_complexity(first.unwrap_or(DEFAULT_PAGE), child_complexity)"
    )]
    async fn segment_transitions(
        &self,
        ctx: &Context<'_>,
        org_id: ID,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        segment: Option<String>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> QueryResult<Connection<String, SegmentTransition>> {
        let limit = cursor::page_size("first", first.unwrap_or(DEFAULT_PAGE))?;
        if let Some(segment) = &segment {
            check_segment("segment", segment)?;
        }
        if let (Some(since), Some(until)) = (since, until) {
            if since > until {
                return Err(QueryError::bad_input("since: must not be after `until`"));
            }
        }
        let after: Option<(DateTime<Utc>, Uuid)> = cursor::decode(after.as_deref())?;
        let rows = crate::types::db(ctx)
            .transitions(&org_id, since, until, segment.as_deref(), after, limit + 1)
            .await?;
        let (rows, has_next) = cursor::page(rows, limit);
        let member = ctx.look_ahead().field("edges").field("node").field("member");
        if member.exists() {
            let mut keys: Vec<MemberKey> = rows
                .iter()
                .map(|row| MemberKey {
                    org_id: row.org_id.clone(),
                    member_id: row.member_id,
                })
                .collect();
            keys.sort_by_key(|key| key.member_id);
            keys.dedup();
            let loaders = ctx.data_unchecked::<loaders::Loaders>();
            loaders::prefetch_members(loaders, &member, &keys).await?;
        }
        let mut connection = Connection::new(after.is_some(), has_next);
        connection.edges = rows
            .into_iter()
            .map(|row| Edge::new(cursor::encode((row.at, row.member_id)), SegmentTransition(row)))
            .collect();
        Ok(connection)
    }
}

/// The member a customer token names in `org_id`: by external id, else by member id.
pub(super) async fn customer_member(
    ctx: &Context<'_>,
    org_id: &str,
    customer: &Customer,
) -> QueryResult<Option<db::MemberRow>> {
    let db = crate::types::db(ctx);
    if let Some(row) = db.member_by_external_id(org_id, &customer.subject).await? {
        return Ok(Some(row));
    }
    let Ok(member_id) = Uuid::parse_str(&customer.subject) else {
        return Ok(None);
    };
    let key = MemberKey {
        org_id: org_id.to_owned(),
        member_id,
    };
    ctx.data_unchecked::<loaders::Loaders>()
        .load_one(DirectoryOf(key))
        .await
}

/// The cursor of a member list: the sort it belongs to, its key and the member.
#[derive(Debug, Serialize, Deserialize)]
enum MemberCursor {
    #[serde(rename = "e")]
    EnrolledAt(DateTime<Utc>, Uuid),
    #[serde(rename = "p")]
    Points(i64, Uuid),
}

impl MemberCursor {
    fn of(sort: MemberSort, row: &db::PageRow) -> Self {
        match sort {
            MemberSort::EnrolledAt => MemberCursor::EnrolledAt(row.member.enrolled_at, row.member.member_id),
            MemberSort::PointsDesc => MemberCursor::Points(row.points, row.member.member_id),
        }
    }

    fn into_after(self, sort: MemberSort) -> QueryResult<MemberAfter> {
        match (self, sort) {
            (MemberCursor::EnrolledAt(at, id), MemberSort::EnrolledAt) => Ok(MemberAfter::EnrolledAt(at, id)),
            (MemberCursor::Points(points, id), MemberSort::PointsDesc) => Ok(MemberAfter::Points(points, id)),
            _ => Err(QueryError::bad_input(
                "after: the cursor belongs to a different `orderBy`",
            )),
        }
    }
}
