//! Who is asking, and the guard every top-level field carries.
//!
//! A request names its key in `Authorization: Bearer <key>` (HTTP) or in the `connection_init`
//! payload of the websocket (`{"Authorization": "Bearer <key>"}`). A key that is presented but
//! unknown or revoked is refused outright; no key at all leaves the caller anonymous, which is
//! enough for introspection and nothing else.
//!
//! Every top-level field names an org and carries an [`OrgGuard`]:
//! - [`Access::Member`] fields (a member, the leaderboard, the program): `storefront` or
//!   `analyst` keys of that org;
//! - [`Access::Analyst`] fields (segments, tiers, liability, member lists): `analyst` keys of
//!   that org.
//!
//! `pos` and `admin` keys belong to the command API and are refused here; another org's key is
//! refused with an error, never answered with empty data.

use async_graphql::{Context, Guard};
use common::keys::{ApiKey, Role};
use sqlx::PgPool;

use crate::error::{QueryError, QueryResult};

/// The authenticated caller of a request or websocket connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No key was presented.
    Anonymous,
    Key(ApiKey),
}

/// What a field gives access to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// One member's view, leaderboards and the program: storefront widgets and analysts.
    Member,
    /// Org-wide analytics and member lists: analysts only.
    Analyst,
}

impl Caller {
    /// Whether this caller may read `org_id` with `access`; the error says why not.
    pub fn check(&self, access: Access, org_id: &str, field: &str) -> QueryResult<()> {
        let key = match self {
            Caller::Anonymous => {
                return Err(QueryError::unauthenticated(
                    "authentication required: send `Authorization: Bearer <key>` with a storefront or analyst key",
                ))
            }
            Caller::Key(key) => key,
        };
        let allowed = match key.role {
            Role::Pos | Role::Admin => {
                return Err(QueryError::forbidden(format!(
                    "{} keys cannot use the query API: use a storefront or analyst key",
                    key.role
                )))
            }
            Role::Storefront => access == Access::Member,
            Role::Analyst => true,
        };
        if key.org_id != org_id {
            return Err(QueryError::forbidden(format!(
                "this key cannot read org '{org_id}'"
            )));
        }
        if !allowed {
            return Err(QueryError::forbidden(format!(
                "`{field}` requires an analyst key"
            )));
        }
        Ok(())
    }
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
        let caller = ctx.data_opt::<Caller>().unwrap_or(&Caller::Anonymous);
        let field = ctx.item.node.name.node.as_str();
        caller.check(self.access, &self.org_id, field).map_err(Into::into)
    }
}

/// The caller behind an `Authorization` header value (`None`: no header).
pub async fn from_header(pool: &PgPool, header: Option<&str>) -> QueryResult<Caller> {
    let Some(header) = header else {
        return Ok(Caller::Anonymous);
    };
    let token = common::keys::bearer_token(header)
        .ok_or_else(|| QueryError::unauthenticated("the Authorization header must be `Bearer <key>`"))?;
    match common::keys::authenticate(pool, token).await? {
        Some(key) => Ok(Caller::Key(key)),
        None => Err(QueryError::unauthenticated("unknown or revoked API key")),
    }
}

/// The caller named by a websocket `connection_init` payload: `{"Authorization": "Bearer <key>"}`
/// (any case of the name), optionally nested under `"headers"` as some clients do.
pub async fn from_init_payload(pool: &PgPool, payload: &serde_json::Value) -> QueryResult<Caller> {
    fn find(value: &serde_json::Value) -> Option<&str> {
        let object = value.as_object()?;
        object
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            .and_then(|(_, value)| value.as_str())
            .or_else(|| object.get("headers").and_then(find))
    }
    from_header(pool, find(payload)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn key(org: &str, role: Role) -> Caller {
        Caller::Key(ApiKey {
            key_id: Uuid::new_v4(),
            org_id: org.to_owned(),
            role,
        })
    }

    #[test]
    fn the_role_and_org_matrix() {
        use Access::*;
        let cases = [
            (key("acme", Role::Storefront), Member, "acme", Some(())),
            (key("acme", Role::Storefront), Analyst, "acme", None),
            (key("acme", Role::Analyst), Member, "acme", Some(())),
            (key("acme", Role::Analyst), Analyst, "acme", Some(())),
            (key("acme", Role::Analyst), Analyst, "other", None),
            (key("acme", Role::Storefront), Member, "other", None),
            (key("acme", Role::Pos), Member, "acme", None),
            (key("acme", Role::Admin), Analyst, "acme", None),
            (Caller::Anonymous, Member, "acme", None),
        ];
        for (caller, access, org, expected) in cases {
            let outcome = caller.check(access, org, "field");
            assert_eq!(
                outcome.as_ref().ok().copied(),
                expected,
                "{caller:?} {access:?} {org}"
            );
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
    }
}
