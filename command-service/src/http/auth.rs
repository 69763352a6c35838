//! Authentication and authorization of the command API.
//!
//! Every `/v1` request carries `Authorization: Bearer <key>`. A key belongs to one org and has
//! one role: it may only act on its own org's paths, and only `pos` and `admin` keys may use the
//! command API at large (`storefront` and `analyst` keys are read-only keys of the query
//! service). A storefront widget acts for its shopper with the org's publishable key plus the
//! customer token the merchant's backend signed, in `X-Customer-Token` (SPEC §10): that pair may
//! redeem rewards for the token's own member, and nothing else.
//!
//! | action | pos | admin | publishable + customer token | storefront | analyst |
//! | --- | --- | --- | --- | --- | --- |
//! | redeem | ✓ | ✓ | its own member only | | |
//! | enrol, purchase, refund, read a member | ✓ | ✓ | | | |
//! | program, locations, adjustments, system jobs, keys and secrets | | ✓ | | | |
//!
//! Keys and signing secrets come from the process's [`Credentials`](common::credentials) cache,
//! which a revocation empties at once (LISTEN/NOTIFY).

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use common::customer_token::Customer;
use common::keys::{ApiKey, Role};

use crate::http::error::ApiError;
use crate::http::state::AppState;

/// The header a customer token travels in (SPEC §11).
pub const CUSTOMER_TOKEN_HEADER: &str = "x-customer-token";

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Point-of-sale operations: enrol, purchase, refund, read members.
    Operate,
    /// Redeem a reward: point of sale, or the member's own customer token.
    Redeem,
    /// Program administration, adjustments, system jobs, keys and secrets.
    Administer,
}

impl Action {
    fn allows(self, caller: &Caller) -> bool {
        match (self, caller.key.role) {
            (_, Role::Admin) => true,
            (Action::Operate | Action::Redeem, Role::Pos) => true,
            (Action::Redeem, Role::Publishable) => caller.customer.is_some(),
            _ => false,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Action::Operate => "use the command API",
            Action::Redeem => "redeem rewards",
            Action::Administer => "administer the program, adjust points, run jobs or manage keys",
        }
    }
}

/// The authenticated caller of a request: its key, and the customer its token names when a
/// publishable key came with one.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key: ApiKey,
    pub customer: Option<Customer>,
}

impl Caller {
    /// Refuses unless the key belongs to `org` and may perform `action`.
    pub fn authorize(&self, org: &str, action: Action) -> Result<(), ApiError> {
        if self.key.org_id != org {
            return Err(ApiError::WrongOrg);
        }
        if !action.allows(self) {
            let who = match (self.key.role, &self.customer) {
                (Role::Publishable, None) => "a publishable key without a customer token".to_owned(),
                (Role::Publishable, Some(_)) => "a customer token".to_owned(),
                (role, _) => format!("a {role} key"),
            };
            return Err(ApiError::Forbidden(format!("{who} cannot {}", action.describe())));
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
        let key = state
            .credentials()
            .authenticate(token)
            .await?
            .ok_or(ApiError::InvalidCredentials)?;
        tracing::Span::current().record("key_id", tracing::field::display(key.key_id));
        state
            .key_rate()
            .check(key.key_id)
            .map_err(|wait| ApiError::RateLimited {
                retry_after_secs: common::overload::retry_after_secs(wait),
            })?;
        let customer_token = parts
            .headers
            .get(CUSTOMER_TOKEN_HEADER)
            .map(|value| value.to_str().map(str::trim).unwrap_or_default());
        let customer = match (key.role, customer_token) {
            (_, None) => None,
            (Role::Publishable, Some(token)) => Some(
                state
                    .credentials()
                    .customer(&key, token)
                    .await?
                    .map_err(ApiError::InvalidCustomerToken)?,
            ),
            (role, Some(_)) => {
                return Err(ApiError::Forbidden(format!(
                    "a customer token goes with a publishable key, not a {role} key"
                )))
            }
        };
        Ok(Caller { key, customer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use uuid::Uuid;

    fn caller(org: &str, role: Role) -> Caller {
        Caller {
            key: ApiKey {
                key_id: Uuid::new_v4(),
                org_id: org.to_owned(),
                role,
            },
            customer: None,
        }
    }

    fn customer(org: &str) -> Caller {
        Caller {
            customer: Some(Customer {
                org_id: org.to_owned(),
                subject: "card-1".to_owned(),
                expires_at: Utc::now(),
                secret_id: Uuid::nil(),
            }),
            ..caller(org, Role::Publishable)
        }
    }

    #[test]
    fn the_role_matrix() {
        use Action::*;
        let expected = [
            (caller("acme", Role::Pos), [true, true, false]),
            (caller("acme", Role::Admin), [true, true, true]),
            (caller("acme", Role::Storefront), [false, false, false]),
            (caller("acme", Role::Analyst), [false, false, false]),
            (caller("acme", Role::Publishable), [false, false, false]),
            (customer("acme"), [false, true, false]),
        ];
        for (caller, allowed) in expected {
            for (action, allowed) in [Operate, Redeem, Administer].into_iter().zip(allowed) {
                let result = caller.authorize("acme", action);
                assert_eq!(result.is_ok(), allowed, "{caller:?} {action:?}");
            }
        }
    }

    #[test]
    fn a_key_only_acts_on_its_own_org() {
        let error = caller("acme", Role::Admin)
            .authorize("globex", Action::Operate)
            .unwrap_err();
        assert!(matches!(error, ApiError::WrongOrg));
        let error = customer("acme").authorize("globex", Action::Redeem).unwrap_err();
        assert!(matches!(error, ApiError::WrongOrg));
    }

    #[test]
    fn refusals_name_who_asked() {
        let error = caller("acme", Role::Publishable)
            .authorize("acme", Action::Redeem)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "a publishable key without a customer token cannot redeem rewards"
        );
        let error = customer("acme").authorize("acme", Action::Operate).unwrap_err();
        assert_eq!(error.to_string(), "a customer token cannot use the command API");
    }
}
