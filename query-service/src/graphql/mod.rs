//! The schema: query and subscription roots, limits, and the schema used for introspection.
//!
//! Every top-level field takes the org it reads as `orgId` and carries an
//! [`OrgGuard`](crate::auth::OrgGuard) (public, member, customer or analyst access).
//!
//! Limits: queries are validated against a depth and a complexity limit before anything runs.
//! Pure introspection queries (only `__schema` / `__type` / `__typename` at the top, as GraphiQL
//! and code generators send) go to a second, introspection-only schema with looser limits, since
//! the standard introspection query alone nests deeper than any data query needs.

use std::sync::Arc;

use async_graphql::parser::types::{DocumentOperations, OperationType, Selection};
use async_graphql::{Request, Schema};
use domain::ids::MemberKey;
use uuid::Uuid;

use crate::card_cache::{self, MemberReads};
use crate::db::Db;
use crate::error::{QueryError, QueryResult};
use crate::live::LiveFeed;
use crate::loaders;
use crate::redeem::Redeemer;
use crate::Limits;

mod mutation;
mod query;
mod subscription;

pub use mutation::{MutationRoot, Redemption};
pub use query::QueryRoot;
pub use subscription::SubscriptionRoot;

/// The schema type served.
pub type QuerySchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

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
    /// The schemas without a command API: `redeemReward` fails (for tools and tests that only
    /// read).
    pub fn new(db: Db, live: Arc<LiveFeed>, limits: Limits) -> Self {
        Self::build(db, live, None, limits)
    }

    /// The schemas, `redeemReward` sending redemptions through `redeemer`.
    pub fn with_redeemer(db: Db, live: Arc<LiveFeed>, redeemer: Redeemer, limits: Limits) -> Self {
        Self::build(db, live, Some(redeemer), limits)
    }

    fn build(db: Db, live: Arc<LiveFeed>, redeemer: Option<Redeemer>, limits: Limits) -> Self {
        let mut strict = Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
            .data(loaders::uncached(db.clone()))
            .data(db.clone())
            .data(live);
        if let Some(redeemer) = redeemer {
            strict = strict.data(redeemer);
        }
        let strict = strict
            .limit_depth(limits.max_depth)
            .limit_complexity(limits.max_complexity)
            .extension(crate::document_size::DocumentSize)
            .finish();
        let introspection = Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
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
        self.execute_kind(request, caller).await.response
    }

    /// [`Self::execute`], with what the HTTP side needs besides the response.
    pub async fn execute_kind(&self, mut request: Request, caller: crate::auth::Caller) -> Executed {
        let (schema, kind) = self.for_request(&mut request);
        let card_query = kind == "query" && card_cache::is_card_query(&mut request);
        let reads = Arc::new(MemberReads::default());
        let response = schema
            .execute(
                request
                    .data(caller)
                    .data(loaders::for_request(self.db.clone()))
                    .data(Arc::clone(&reads)),
            )
            .await;
        let card = if card_query && response.is_ok() {
            reads.only()
        } else {
            None
        };
        Executed { response, kind, card }
    }

    /// The schema `request` should run on, and its kind for metrics. Parses the document into
    /// the request, where async-graphql finds it instead of parsing it again.
    pub fn for_request(&self, request: &mut Request) -> (&QuerySchema, &'static str) {
        if is_introspection(request) {
            (&self.introspection, "introspection")
        } else {
            (&self.strict, "query")
        }
    }
}

/// A request run by [`Schemas::execute_kind`].
pub struct Executed {
    pub response: async_graphql::Response,
    /// The request's kind for metrics.
    pub kind: &'static str,
    /// The member whose card this is, when the answer may be cached (`card_cache`).
    pub card: Option<MemberKey>,
}

/// The SDL of the schema, as served and as checked in at `schema/graphql/schema.graphql`.
pub fn sdl() -> String {
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .finish()
        .sdl()
}

/// Whether the operation `request` runs selects only introspection fields at its top level.
/// Anything unparsable or ambiguous is "no": it then meets the strict limits (and errors).
fn is_introspection(request: &mut Request) -> bool {
    query_selects_only(request, |field| field.starts_with("__"))
}

/// Whether `request` runs a query whose top level holds only fields (no fragments, no
/// directives) that `allowed` accepts by name. Anything unparsable or ambiguous is "no".
pub(crate) fn query_selects_only(request: &mut Request, allowed: impl Fn(&str) -> bool) -> bool {
    let operation_name = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return false;
    };
    let operation = match (&document.operations, operation_name.as_deref()) {
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
            matches!(&selection.node, Selection::Field(field)
                if field.node.directives.is_empty() && allowed(&field.node.name.node))
        })
}

fn parse_member_id(argument: &str, id: &str) -> QueryResult<Uuid> {
    Uuid::parse_str(id)
        .map_err(|_| QueryError::bad_input(format!("{argument}: '{id}' is not a member id (UUID)")))
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
            assert_eq!(
                is_introspection(&mut request),
                expected,
                "{query} / {operation:?}"
            );
        }
    }
}
