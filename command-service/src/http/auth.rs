//! Authentication and authorization of the command API.
//!
//! Every `/v1` request carries `Authorization: Bearer <key>`. A key belongs to one org and has
//! one role: it may only act on its own org's paths, and only `pos` and `admin` keys may use the
//! command API at all (`storefront` and `analyst` keys are read-only keys of the query service).
//!
//! | action | pos | admin | storefront | analyst |
//! | --- | --- | --- | --- | --- |
//! | enrol, purchase, refund, redeem, read a member | ✓ | ✓ | | |
//! | program, locations, adjustments, system jobs | | ✓ | | |

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use common::keys::{ApiKey, Role};

use crate::http::error::ApiError;
use crate::http::state::AppState;

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Point-of-sale operations: enrol, purchase, refund, redeem, read members.
    Operate,
    /// Program administration, adjustments and system jobs.
    Administer,
}

impl Action {
    fn allows(self, role: Role) -> bool {
        match (self, role) {
            (_, Role::Admin) => true,
            (Action::Operate, Role::Pos) => true,
            (Action::Administer, Role::Pos) | (_, Role::Storefront | Role::Analyst) => false,
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub ApiKey);

impl Caller {
    /// Refuses unless the key belongs to `org` and its role may perform `action`.
    pub fn authorize(&self, org: &str, action: Action) -> Result<(), ApiError> {
        let key = &self.0;
        if key.org_id != org {
            return Err(ApiError::WrongOrg);
        }
        if !action.allows(key.role) {
            let what = match action {
                Action::Operate => "use the command API",
                Action::Administer => "administer the program, adjust points or run jobs",
            };
            return Err(ApiError::Forbidden(format!("a {} key cannot {what}", key.role)));
        }
        Ok(())
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(common::keys::bearer_token)
            .ok_or(ApiError::MissingCredentials)?;
        let key = common::keys::authenticate(state.pool(), token)
            .await?
            .ok_or(ApiError::InvalidCredentials)?;
        tracing::Span::current().record("key_id", tracing::field::display(key.key_id));
        Ok(Caller(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn caller(org: &str, role: Role) -> Caller {
        Caller(ApiKey {
            key_id: Uuid::new_v4(),
            org_id: org.to_owned(),
            role,
        })
    }

    #[test]
    fn the_role_matrix() {
        let expected = [
            (Role::Pos, Action::Operate, true),
            (Role::Pos, Action::Administer, false),
            (Role::Admin, Action::Operate, true),
            (Role::Admin, Action::Administer, true),
            (Role::Storefront, Action::Operate, false),
            (Role::Storefront, Action::Administer, false),
            (Role::Analyst, Action::Operate, false),
            (Role::Analyst, Action::Administer, false),
        ];
        for (role, action, allowed) in expected {
            let result = caller("acme", role).authorize("acme", action);
            assert_eq!(result.is_ok(), allowed, "{role} {action:?}");
        }
    }

    #[test]
    fn a_key_only_acts_on_its_own_org() {
        let error = caller("acme", Role::Admin)
            .authorize("globex", Action::Operate)
            .unwrap_err();
        assert!(matches!(error, ApiError::WrongOrg));
    }
}
