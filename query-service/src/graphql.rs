//! The schema: query and subscription roots, limits, and the schema used for introspection.
//!
//! Every top-level field takes the org it reads as `orgId` and carries an
//! [`OrgGuard`](crate::auth::OrgGuard) (storefront + analyst, or analyst only).
//!
//! Limits: queries are validated against a depth and a complexity limit before anything runs.
//! Pure introspection queries (only `__schema` / `__type` / `__typename` at the top, as GraphiQL
//! and code generators send) go to a second, introspection-only schema with looser limits, since
//! the standard introspection query alone nests deeper than any data query needs.

use std::sync::Arc;

use async_graphql::connection::{Connection, Edge};
use async_graphql::parser::types::{DocumentOperations, OperationType, Selection};
use async_graphql::{Context, EmptyMutation, Object, Request, Schema, Subscription, ID};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt as _};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{Access, OrgGuard};
use crate::cursor::{self, DEFAULT_PAGE};
use crate::db::{self, Db, MemberAfter, MemberSort, PeriodKeys};
use crate::error::{QueryError, QueryResult};
use crate::live::{LiveFeed, MemberKey};
use crate::loaders::{self, DirectoryOf, ProgramOf};
use crate::types::{
    check_segment, segment_of, LeaderboardEntry, Liability, LiveState, Member, MemberFilter, MemberOrder,
    MemberUpdate, Period, Program, RfmCell, SegmentCount, SegmentTransition, TierCount, SEGMENTS,
};
use crate::Limits;

/// Entries of a leaderboard when `first` is not given (SPEC §8: `first: Int = 10`).
const LEADERBOARD_DEFAULT: i32 = 10;

/// The schema type served.
pub type QuerySchema = Schema<QueryRoot, EmptyMutation, SubscriptionRoot>;

/// Limits of pure introspection queries (the standard one nests about 13 deep).
const INTROSPECTION_LIMITS: Limits = Limits {
    max_depth: 20,
    max_complexity: 20_000,
};

/// The schema for data queries and the one for introspection.
pub struct Schemas {
    strict: QuerySchema,
    introspection: QuerySchema,
    db: Db,
}

impl Schemas {
    pub fn new(db: Db, live: Arc<LiveFeed>, limits: Limits) -> Self {
        let strict = Schema::build(QueryRoot, EmptyMutation, SubscriptionRoot)
            .data(loaders::uncached(db.clone()))
            .data(db.clone())
            .data(live)
            .limit_depth(limits.max_depth)
            .limit_complexity(limits.max_complexity)
            .extension(crate::document_size::DocumentSize)
            .finish();
        let introspection = Schema::build(QueryRoot, EmptyMutation, SubscriptionRoot)
            .introspection_only()
            .limit_depth(INTROSPECTION_LIMITS.max_depth)
            .limit_complexity(INTROSPECTION_LIMITS.max_complexity)
            .extension(crate::document_size::DocumentSize)
            .finish();
        Self {
            strict,
            introspection,
            db,
        }
    }

    /// The schema for data queries and subscriptions.
    pub fn strict(&self) -> &QuerySchema {
        &self.strict
    }

    /// Runs `query` with `variables` as `caller` (as `POST /graphql` does after authenticating)
    /// and returns the JSON response.
    pub async fn execute_json(
        &self,
        caller: crate::auth::Caller,
        query: &str,
        variables: serde_json::Value,
    ) -> serde_json::Value {
        let request = Request::new(query).variables(async_graphql::Variables::from_json(variables));
        let response = self.execute(request, caller).await;
        serde_json::to_value(&response).unwrap_or_default()
    }

    /// Runs `request` as `caller` on the schema it belongs to, with loaders of its own.
    pub async fn execute(&self, request: Request, caller: crate::auth::Caller) -> async_graphql::Response {
        let (schema, _) = self.for_request(&request);
        schema
            .execute(request.data(caller).data(loaders::for_request(self.db.clone())))
            .await
    }

    /// The schema `request` should run on, and its kind for metrics.
    pub fn for_request(&self, request: &Request) -> (&QuerySchema, &'static str) {
        if is_introspection(request) {
            (&self.introspection, "introspection")
        } else {
            (&self.strict, "query")
        }
    }
}

/// The SDL of the schema, as served and as checked in at `schema/graphql/schema.graphql`.
pub fn sdl() -> String {
    Schema::build(QueryRoot, EmptyMutation, SubscriptionRoot)
        .finish()
        .sdl()
}

/// Whether the operation `request` runs selects only introspection fields at its top level.
/// Anything unparsable or ambiguous is "no": it then meets the strict limits (and errors).
fn is_introspection(request: &Request) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    let operation = match (&document.operations, request.operation_name.as_deref()) {
        (DocumentOperations::Single(operation), _) => operation,
        (DocumentOperations::Multiple(operations), Some(name)) => match operations.get(name) {
            Some(operation) => operation,
            None => return false,
        },
        // A single named operation needs no name in the request.
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            match operations.values().next() {
                Some(operation) => operation,
                None => return false,
            }
        }
        (DocumentOperations::Multiple(_), None) => return false,
    };
    operation.node.ty == OperationType::Query
        && operation.node.selection_set.node.items.iter().all(|selection| {
            matches!(&selection.node, Selection::Field(field) if field.node.name.node.starts_with("__"))
        })
}

fn parse_member_id(argument: &str, id: &str) -> QueryResult<Uuid> {
    Uuid::parse_str(id)
        .map_err(|_| QueryError::bad_input(format!("{argument}: '{id}' is not a member id (UUID)")))
}

/// Read-only queries of the loyalty read models.
pub struct QueryRoot;

/// Read-only queries of the loyalty read models. Every field names the org it reads; list
/// fields take `first` (page size, 1 to 100) and, when paged, `after` (the `endCursor` of the
/// previous page).
#[Object(name = "Query")]
impl QueryRoot {
    /// A member, named by `memberId` or by `externalId` (exactly one); null if the org has no
    /// such member. Storefront and analyst keys.
    #[graphql(guard = "OrgGuard::new(Access::Member, &org_id)")]
    async fn member(
        &self,
        ctx: &Context<'_>,
        org_id: ID,
        member_id: Option<ID>,
        external_id: Option<String>,
    ) -> QueryResult<Option<Member>> {
        let db = crate::types::db(ctx);
        let row = match (member_id, external_id) {
            (Some(member_id), None) => {
                // Through the loader: many aliased `member` fields in one request batch up.
                let key = MemberKey {
                    org_id: org_id.0.clone(),
                    member_id: parse_member_id("memberId", &member_id)?,
                };
                ctx.data_unchecked::<loaders::Loaders>()
                    .load_one(DirectoryOf(key))
                    .await?
            }
            (None, Some(external_id)) => db.member_by_external_id(&org_id, &external_id).await?,
            _ => {
                return Err(QueryError::bad_input(
                    "member: give exactly one of `memberId` and `externalId`",
                ))
            }
        };
        Ok(row.map(|row| Member { row }))
    }

    /// The current board of a period (the week, month containing now, or all time), org-wide
    /// or of one location: the top `first` members. Storefront and analyst keys.
    #[graphql(
        guard = "OrgGuard::new(Access::Member, &org_id)",
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

    /// The org's program in force: tiers, rewards, stamp cards. Null until it is configured.
    /// Storefront and analyst keys.
    #[graphql(guard = "OrgGuard::new(Access::Member, &org_id)")]
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
        Ok(SEGMENTS
            .iter()
            .map(|segment| SegmentCount {
                segment: (*segment).to_owned(),
                count: counts.get(*segment).copied().unwrap_or(0),
            })
            .collect())
    }

    /// Members per cell of the R × F grid: all 25 cells, R from 5 down, F from 1 up.
    /// Analyst keys.
    #[graphql(guard = "OrgGuard::new(Access::Analyst, &org_id)")]
    async fn rfm_grid(&self, ctx: &Context<'_>, org_id: ID) -> QueryResult<Vec<RfmCell>> {
        let counts = crate::types::db(ctx).rfm_grid(&org_id).await?;
        Ok((1..=5)
            .rev()
            .flat_map(|r| (1..=5).map(move |f| (r, f)))
            .map(|(r, f)| RfmCell {
                r: i32::from(r),
                f: i32::from(f),
                segment: segment_of(r, f).to_owned(),
                count: counts.get(&(r, f)).copied().unwrap_or(0),
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

    /// The points the org owes its members. Analyst keys.
    #[graphql(guard = "OrgGuard::new(Access::Analyst, &org_id)")]
    async fn liability(&self, ctx: &Context<'_>, org_id: ID) -> QueryResult<Liability> {
        let points = crate::types::db(ctx).liability(&org_id).await?;
        Ok(Liability { points })
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
        let mut rows = crate::types::db(ctx)
            .member_page(&org_id, &db_filter, sort, after.as_ref(), limit + 1)
            .await?;
        let has_next = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
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
    #[allow(clippy::too_many_arguments)]
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
        let mut rows = crate::types::db(ctx)
            .transitions(&org_id, since, until, segment.as_deref(), after, limit + 1)
            .await?;
        let has_next = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
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
            loaders.load_many(keys.iter().cloned().map(DirectoryOf)).await?;
            loaders::prefetch(loaders, &member, &keys).await?;
        }
        let mut connection = Connection::new(after.is_some(), has_next);
        connection.edges = rows
            .into_iter()
            .map(|row| Edge::new(cursor::encode((row.at, row.member_id)), SegmentTransition(row)))
            .collect();
        Ok(connection)
    }
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

/// Live updates.
pub struct SubscriptionRoot;

/// Live updates over websocket (`graphql-transport-ws`); authenticate with the
/// `connection_init` payload `{"Authorization": "Bearer <key>"}`.
#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// The member's balance and tier after each of its events, pushed as the event reaches the
    /// stream (not when the read models catch up). With `includeCurrent`, the current state is
    /// sent first. Storefront and analyst keys.
    #[graphql(guard = "OrgGuard::new(Access::Member, &org_id)")]
    async fn member_updated(
        &self,
        ctx: &Context<'_>,
        org_id: ID,
        member_id: ID,
        #[graphql(default = false)] include_current: bool,
    ) -> async_graphql::Result<impl Stream<Item = MemberUpdate>> {
        let key = MemberKey {
            org_id: org_id.0,
            member_id: parse_member_id("memberId", &member_id)?,
        };
        // Listen first, then read where the log stands: an event committed in between is
        // both in the snapshot and on the stream, and `LiveState` ignores the second copy.
        let subscription = ctx.data_unchecked::<Arc<LiveFeed>>().subscribe(key.clone());
        let events = crate::types::db(ctx).latest_state_events(&key).await?;
        if events.is_empty() {
            return Err(QueryError::bad_input(format!(
                "memberId: org '{}' has no member {}",
                key.org_id, key.member_id
            ))
            .into());
        }
        let state = LiveState::from_events(&events);
        let current = include_current.then(|| MemberUpdate {
            key: key.clone(),
            state: state.clone(),
            event_type: None,
            points_delta: 0,
            committed_at: None,
        });
        let live = futures::stream::unfold(
            (subscription, state, key),
            |(mut subscription, mut state, key)| async move {
                loop {
                    let event = subscription.next().await?;
                    if let Some(update) = state.update(&key, &event) {
                        return Some((update, (subscription, state, key)));
                    }
                }
            },
        );
        Ok(futures::stream::iter(current).chain(live))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use async_graphql::parser::types::{ServiceDocument, TypeKind, TypeSystemDefinition};

    use super::*;

    /// SPEC §8's GraphQL block, verbatim: the names and shapes integrators rely on.
    const SPEC_CONTRACT: &str = r#"
type Query {
  member(orgId: ID!, memberId: ID, externalId: String): Member
  leaderboard(orgId: ID!, period: Period!, locationId: ID, first: Int = 10): [LeaderboardEntry!]!
  segmentCounts(orgId: ID!): [SegmentCount!]!
  tierDistribution(orgId: ID!): [TierCount!]!
  liability(orgId: ID!): Liability!
}
enum Period { WEEK MONTH ALL_TIME }
type Member { memberId: ID! externalId: String displayName: String
  balance: Balance! tier: TierProgress! rfm: Rfm stampCards: [StampCard!]! }
type Balance { points: Int! lifetimeEarned: Int! redeemed: Int! expired: Int! clawedBack: Int! }
type TierProgress { name: String! multiplierBps: Int! qualifyingPoints: Int!
  nextTier: String pointsToNext: Int }
type Rfm { recencyDays: Int! frequency: Int! monetaryMinor: Int!
  r: Int! f: Int! m: Int! segment: String! }
type LeaderboardEntry { rank: Int! memberId: ID! displayName: String! points: Int! }
type SegmentCount { segment: String! count: Int! }
type TierCount { tier: String! count: Int! }
type Liability { points: Int! }
"#;

    /// type → field → (type, [(argument, type, default)]), and enum → values.
    type Fields = HashMap<String, HashMap<String, (String, Vec<(String, String, Option<String>)>)>>;

    fn shapes(document: &ServiceDocument) -> (Fields, HashMap<String, Vec<String>>) {
        let mut fields = Fields::new();
        let mut enums = HashMap::new();
        for definition in &document.definitions {
            let TypeSystemDefinition::Type(ty) = definition else {
                continue;
            };
            let name = ty.node.name.node.to_string();
            match &ty.node.kind {
                TypeKind::Object(object) => {
                    let entry = fields.entry(name).or_default();
                    for field in &object.fields {
                        let arguments = field
                            .node
                            .arguments
                            .iter()
                            .map(|argument| {
                                (
                                    argument.node.name.node.to_string(),
                                    argument.node.ty.node.to_string(),
                                    argument.node.default_value.as_ref().map(|v| v.node.to_string()),
                                )
                            })
                            .collect();
                        entry.insert(
                            field.node.name.node.to_string(),
                            (field.node.ty.node.to_string(), arguments),
                        );
                    }
                }
                TypeKind::Enum(values) => {
                    enums.insert(
                        name,
                        values
                            .values
                            .iter()
                            .map(|v| v.node.value.node.to_string())
                            .collect(),
                    );
                }
                _ => {}
            }
        }
        (fields, enums)
    }

    #[test]
    fn the_schema_has_every_name_and_shape_of_spec_section_8() {
        let spec = async_graphql::parser::parse_schema(SPEC_CONTRACT).unwrap();
        let served = async_graphql::parser::parse_schema(sdl()).unwrap();
        let (spec_fields, spec_enums) = shapes(&spec);
        let (served_fields, served_enums) = shapes(&served);
        for (ty, fields) in &spec_fields {
            let served = served_fields
                .get(ty)
                .unwrap_or_else(|| panic!("type {ty} is missing"));
            for (field, (field_type, arguments)) in fields {
                let (served_type, served_arguments) = served
                    .get(field)
                    .unwrap_or_else(|| panic!("{ty}.{field} is missing"));
                assert_eq!(served_type, field_type, "type of {ty}.{field}");
                // Same arguments, in the same order; extra arguments would have to be optional.
                assert_eq!(served_arguments, arguments, "arguments of {ty}.{field}");
            }
        }
        for (name, values) in &spec_enums {
            assert_eq!(served_enums.get(name), Some(values), "enum {name}");
        }
    }

    #[test]
    fn only_pure_introspection_goes_to_the_introspection_schema() {
        let cases = [
            ("{ __schema { types { name } } }", None, true),
            (
                "query Q { __type(name: \"Member\") { name } __typename }",
                None,
                true,
            ),
            ("{ __typename liability(orgId: \"a\") { points } }", None, false),
            ("{ liability(orgId: \"a\") { points } }", None, false),
            (
                "query A { __typename } query B { liability(orgId: \"a\") { points } }",
                Some("B"),
                false,
            ),
            (
                "query A { __typename } query B { liability(orgId: \"a\") { points } }",
                Some("A"),
                true,
            ),
            ("query A { __typename } query B { __typename }", None, false),
            ("subscription { __typename }", None, false),
            ("{ ...F } fragment F on Query { __typename }", None, false),
            ("not graphql", None, false),
        ];
        for (query, operation, expected) in cases {
            let mut request = Request::new(query);
            if let Some(operation) = operation {
                request = request.operation_name(operation);
            }
            assert_eq!(is_introspection(&request), expected, "{query} / {operation:?}");
        }
    }
}
