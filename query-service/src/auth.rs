//! Who is asking, and the guards every top-level field and every member carry.
//!
//! A request names its key in `Authorization: Bearer <key>` (HTTP) or in the `connection_init`
//! payload of the websocket (`{"Authorization": "Bearer <key>"}`). A storefront widget in a
//! shopper's browser sends the org's publishable key there, plus the customer token its
//! merchant's backend signed, in `X-Customer-Token` (or `"X-Customer-Token"` in the payload;
//! SPEC §10). A key or token that is presented but unknown, revoked or invalid refuses the
//! request outright (401, `UNAUTHENTICATED` / `INVALID_CUSTOMER_TOKEN`); no key at all leaves
//! the caller anonymous, which is enough for introspection and nothing else.
//!
//! Every top-level field names an org and carries an [`OrgGuard`]:
//!
//! | access | storefront | analyst | publishable alone | publishable + customer token |
//! | --- | --- | --- | --- | --- |
//! | [`Access::Public`]: program, leaderboards | ✓ | ✓ | ✓ | ✓ |
//! | [`Access::Member`]: a member, its live updates | ✓ | ✓ | | its own member only |
//! | [`Access::Customer`]: `me`, `redeemReward` | | | | ✓ |
//! | [`Access::Analyst`]: segments, tiers, liability, lists | | ✓ | | |
//!
//! `pos` and `admin` keys belong to the command API and are refused here; another org's key is
//! refused with an error, never answered with empty data. With a customer token, naming any
//! member but the token's own gets [`NOT_YOUR_MEMBER`], whether that member exists or not (no
//! existence oracle), and every field of a [`Member`](crate::types::Member) checks again
//! ([`MemberGuard`]).

use async_graphql::{Context, Guard};
use common::credentials::Credentials;
use common::customer_token::Customer;
use common::keys::{ApiKey, Role};

use crate::db::MemberRow;
use crate::error::{QueryError, QueryResult};

/// The header a customer token travels in (SPEC §11).
pub const CUSTOMER_TOKEN_HEADER: &str = "x-customer-token";

/// The one answer to a customer token naming a member that is not its own.
pub const NOT_YOUR_MEMBER: &str = "a customer token reads only its own member";

/// The authenticated caller of a request or websocket connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No key was presented.
    Anonymous,
    /// An org-wide key (storefront or analyst; pos and admin are refused by every guard).
    Key(ApiKey),
    /// A publishable key without a customer token: public data of its org.
    Publishable(ApiKey),
    /// A publishable key with a valid customer token: public data and that customer's member.
    Customer {
        key: ApiKey,
        customer: Customer,
        presented: Presented,
    },
}

/// The publishable key and customer token as presented, for `redeemReward` to send on to the
/// command API (which checks them itself). `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Presented {
    pub key: String,
    pub token: String,
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Presented(***)")
    }
}

/// What a field gives access to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The program and the pseudonymous leaderboards.
    Public,
    /// One member's view: org-wide storefront and analyst keys, or that member's customer.
    Member,
    /// The customer's own member, named by the token: customer tokens only.
    Customer,
    /// Org-wide analytics and member lists: analysts only.
    Analyst,
}

impl Caller {
    /// The org and role of the caller, for spans and metrics.
    pub fn describe(&self) -> (String, &'static str) {
        match self {
            Caller::Anonymous => (String::new(), "anonymous"),
            Caller::Key(key) | Caller::Publishable(key) => (key.org_id.clone(), key.role.as_str()),
            Caller::Customer { key, .. } => (key.org_id.clone(), "customer"),
        }
    }

    /// The customer, when a customer token was presented.
    pub fn customer(&self) -> Option<&Customer> {
        match self {
            Caller::Customer { customer, .. } => Some(customer),
            _ => None,
        }
    }

    /// Whether this caller may read `org_id` with `access`; the error says why not.
    pub fn check(&self, access: Access, org_id: &str, field: &str) -> QueryResult<()> {
        let (key, allowed) = match self {
            Caller::Anonymous => {
                return Err(QueryError::unauthenticated(
                    "authentication required: send `Authorization: Bearer <key>` with a storefront, analyst or publishable key",
                ))
            }
            Caller::Key(key) => match key.role {
                Role::Pos | Role::Admin => {
                    return Err(QueryError::forbidden(format!(
                        "{} keys cannot use the query API: use a storefront or analyst key",
                        key.role
                    )))
                }
                Role::Storefront => (key, matches!(access, Access::Public | Access::Member)),
                Role::Analyst => (key, access != Access::Customer),
                // `from_header` makes these `Publishable`; never reached.
                Role::Publishable => (key, access == Access::Public),
            },
            Caller::Publishable(key) => (key, access == Access::Public),
            Caller::Customer { key, .. } => (key, access != Access::Analyst),
        };
        if key.org_id != org_id {
            return Err(QueryError::forbidden(format!(
                "this key cannot read org '{org_id}'"
            )));
        }
        if !allowed {
            let needs = match access {
                Access::Analyst => "an analyst key",
                Access::Customer => "a customer token (`X-Customer-Token`) with the org's publishable key",
                Access::Member => {
                    "a customer token (`X-Customer-Token`) with the publishable key, or a storefront or analyst key"
                }
                Access::Public => "a storefront, analyst or publishable key",
            };
            return Err(QueryError::forbidden(format!("`{field}` requires {needs}")));
        }
        Ok(())
    }

    /// Whether this caller may read the member `row` (of an org the entry field checked).
    pub fn may_read(&self, row: &MemberRow) -> bool {
        match self {
            Caller::Key(key) => {
                matches!(key.role, Role::Storefront | Role::Analyst) && key.org_id == row.org_id
            }
            Caller::Customer { customer, .. } => owns(customer, row),
            Caller::Anonymous | Caller::Publishable(_) => false,
        }
    }
}

/// Whether `row` is the member `customer`'s token names (by member id or external id).
pub fn owns(customer: &Customer, row: &MemberRow) -> bool {
    customer.org_id == row.org_id
        && (row.member_id.to_string() == customer.subject
            || row.external_id.as_deref() == Some(customer.subject.as_str()))
}

fn caller<'a>(ctx: &Context<'a>) -> &'a Caller {
    ctx.data_opt::<Caller>().unwrap_or(&Caller::Anonymous)
}

/// Guard of a top-level field: see the module documentation.
pub struct OrgGuard {
    access: Access,
    org_id: String,
}

impl OrgGuard {
    pub fn new(access: Access, org_id: &str) -> Self {
        Self {
            access,
            org_id: org_id.to_owned(),
        }
    }
}

impl Guard for OrgGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let field = ctx.item.node.name.node.as_str();
        caller(ctx)
            .check(self.access, &self.org_id, field)
            .map_err(Into::into)
    }
}

/// Guard of every field of a member: the entry fields already refused other members; this
/// holds whatever path a query takes to a member.
pub struct MemberGuard<'a>(pub &'a MemberRow);

impl Guard for MemberGuard<'_> {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        if caller(ctx).may_read(self.0) {
            Ok(())
        } else {
            Err(QueryError::forbidden(NOT_YOUR_MEMBER).into())
        }
    }
}

/// The caller behind the `Authorization` and `X-Customer-Token` header values (`None`: absent).
pub async fn from_headers(
    credentials: &Credentials,
    authorization: Option<&str>,
    customer_token: Option<&str>,
) -> QueryResult<Caller> {
    let Some(authorization) = authorization else {
        return match customer_token {
            None => Ok(Caller::Anonymous),
            Some(_) => Err(QueryError::unauthenticated(
                "a customer token goes with the org's publishable key in `Authorization: Bearer <key>`",
            )),
        };
    };
    let token = common::keys::bearer_token(authorization)
        .ok_or_else(|| QueryError::unauthenticated("the Authorization header must be `Bearer <key>`"))?;
    let key = credentials
        .authenticate(token)
        .await?
        .ok_or_else(|| QueryError::unauthenticated("unknown or revoked API key"))?;
    match (key.role, customer_token) {
        (Role::Publishable, None) => Ok(Caller::Publishable(key)),
        (Role::Publishable, Some(customer_token)) => {
            match credentials.customer(&key, customer_token.trim()).await? {
                Ok(customer) => Ok(Caller::Customer {
                    key,
                    customer,
                    presented: Presented {
                        key: token.to_owned(),
                        token: customer_token.trim().to_owned(),
                    },
                }),
                Err(refused) => Err(QueryError::invalid_token(refused)),
            }
        }
        (_, None) => Ok(Caller::Key(key)),
        (role, Some(_)) => Err(QueryError::unauthenticated(format!(
            "a customer token goes with a publishable key, not a {role} key"
        ))),
    }
}

/// The caller named by a websocket `connection_init` payload:
/// `{"Authorization": "Bearer <key>", "X-Customer-Token": "<jwt>"}` (any case of the names),
/// optionally nested under `"headers"` as some clients do.
pub async fn from_init_payload(
    credentials: &Credentials,
    payload: &serde_json::Value,
) -> QueryResult<Caller> {
    fn find<'a>(value: &'a serde_json::Value, name: &str) -> Option<&'a str> {
        let object = value.as_object()?;
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| value.as_str())
            .or_else(|| object.get("headers").and_then(|headers| find(headers, name)))
    }
    from_headers(
        credentials,
        find(payload, "authorization"),
        find(payload, CUSTOMER_TOKEN_HEADER),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use uuid::Uuid;

    fn api_key(org: &str, role: Role) -> ApiKey {
        ApiKey {
            key_id: Uuid::new_v4(),
            org_id: org.to_owned(),
            role,
        }
    }

    fn key(org: &str, role: Role) -> Caller {
        Caller::Key(api_key(org, role))
    }

    fn customer(org: &str, subject: &str) -> Caller {
        Caller::Customer {
            key: api_key(org, Role::Publishable),
            customer: Customer {
                org_id: org.to_owned(),
                subject: subject.to_owned(),
                expires_at: Utc::now(),
                secret_id: Uuid::nil(),
            },
            presented: Presented {
                key: "lk_publishable_x".into(),
                token: "jwt".into(),
            },
        }
    }

    #[test]
    fn the_role_and_org_matrix() {
        use Access::*;
        let publishable = Caller::Publishable(api_key("acme", Role::Publishable));
        let cases = [
            (key("acme", Role::Storefront), Member, "acme", true),
            (key("acme", Role::Storefront), Public, "acme", true),
            (key("acme", Role::Storefront), Analyst, "acme", false),
            (key("acme", Role::Storefront), Customer, "acme", false),
            (key("acme", Role::Analyst), Member, "acme", true),
            (key("acme", Role::Analyst), Analyst, "acme", true),
            (key("acme", Role::Analyst), Customer, "acme", false),
            (key("acme", Role::Analyst), Analyst, "other", false),
            (key("acme", Role::Storefront), Member, "other", false),
            (key("acme", Role::Pos), Member, "acme", false),
            (key("acme", Role::Admin), Analyst, "acme", false),
            (publishable.clone(), Public, "acme", true),
            (publishable.clone(), Member, "acme", false),
            (publishable.clone(), Customer, "acme", false),
            (publishable.clone(), Analyst, "acme", false),
            (publishable, Public, "other", false),
            (customer("acme", "card-1"), Public, "acme", true),
            (customer("acme", "card-1"), Member, "acme", true),
            (customer("acme", "card-1"), Customer, "acme", true),
            (customer("acme", "card-1"), Analyst, "acme", false),
            (customer("acme", "card-1"), Member, "other", false),
            (Caller::Anonymous, Public, "acme", false),
        ];
        for (caller, access, org, expected) in cases {
            let outcome = caller.check(access, org, "field");
            assert_eq!(outcome.is_ok(), expected, "{caller:?} {access:?} {org}");
        }
    }

    #[test]
    fn refusals_say_why() {
        let error = key("acme", Role::Storefront)
            .check(Access::Analyst, "acme", "segmentCounts")
            .unwrap_err();
        assert_eq!(error.code(), "FORBIDDEN");
        assert_eq!(error.message(), "`segmentCounts` requires an analyst key");
        let error = key("acme", Role::Pos)
            .check(Access::Member, "acme", "member")
            .unwrap_err();
        assert!(error.message().starts_with("pos keys cannot use the query API"));
        let error = Caller::Anonymous
            .check(Access::Member, "acme", "member")
            .unwrap_err();
        assert_eq!(error.code(), "UNAUTHENTICATED");
        let error = Caller::Publishable(api_key("acme", Role::Publishable))
            .check(Access::Member, "acme", "member")
            .unwrap_err();
        assert!(
            error.message().contains("X-Customer-Token"),
            "{}",
            error.message()
        );
    }

    #[test]
    fn a_customer_owns_the_member_its_token_names() {
        let member_id = Uuid::new_v4();
        let row = MemberRow {
            org_id: "acme".into(),
            member_id,
            external_id: Some("card-1".into()),
            display_name: None,
            enrolled_at: Utc::now(),
        };
        assert!(customer("acme", "card-1").may_read(&row));
        assert!(customer("acme", &member_id.to_string()).may_read(&row));
        assert!(!customer("acme", "card-2").may_read(&row));
        assert!(!customer("globex", "card-1").may_read(&row));
        assert!(key("acme", Role::Storefront).may_read(&row));
        assert!(!key("globex", Role::Analyst).may_read(&row));
        assert!(!Caller::Publishable(api_key("acme", Role::Publishable)).may_read(&row));
    }
}
