//! The one error type of the GraphQL boundary.
//!
//! Every error a client sees carries `extensions.code`: `UNAUTHENTICATED`, `FORBIDDEN`,
//! `BAD_USER_INPUT`, `INVALID_CUSTOMER_TOKEN` (with `extensions.reason`: `expired`,
//! `bad_signature`, `revoked_secret`, `wrong_org`, `too_long_lived`, `malformed`), `REFUSED`
//! (a command the command side refused, with its error `reason` and `field`, e.g.
//! `insufficient_points`) or `INTERNAL`. Internal failures (SQL, a malformed row, NATS) are logged with
//! their full chain and reach the client only as "internal error": no SQL, table or driver text
//! ever leaks.
//!
//! `QueryError` deliberately does not implement `Display`: async-graphql converts anything
//! `Display` into an error carrying its text verbatim, so the only way from a `QueryError` to a
//! GraphQL error is [`From<QueryError> for async_graphql::Error`], which applies the mapping.

use std::sync::Arc;

use async_graphql::ErrorExtensions as _;
use common::customer_token::TokenError;

/// Why a query failed.
#[derive(Debug, Clone)]
pub enum QueryError {
    /// No or no usable credentials.
    Unauthenticated(String),
    /// A valid key that may not read this.
    Forbidden(String),
    /// A bad argument; the message names it.
    BadInput(String),
    /// A customer token that does not pass (SPEC §10).
    InvalidToken(TokenError),
    /// A command the command side refused: its error code, the field it names, its message.
    Refused {
        reason: String,
        field: Option<String>,
        message: String,
    },
    /// Anything else. Logged, never shown.
    Internal(Arc<anyhow::Error>),
}

impl QueryError {
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        QueryError::Unauthenticated(message.into())
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        QueryError::Forbidden(message.into())
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        QueryError::BadInput(message.into())
    }

    pub fn invalid_token(error: TokenError) -> Self {
        QueryError::InvalidToken(error)
    }

    /// The `extensions.code` of the error.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::Unauthenticated(_) => "UNAUTHENTICATED",
            QueryError::Forbidden(_) => "FORBIDDEN",
            QueryError::BadInput(_) => "BAD_USER_INPUT",
            QueryError::InvalidToken(_) => "INVALID_CUSTOMER_TOKEN",
            QueryError::Refused { .. } => "REFUSED",
            QueryError::Internal(_) => "INTERNAL",
        }
    }

    /// What the client is told.
    pub fn message(&self) -> String {
        match self {
            QueryError::Unauthenticated(message)
            | QueryError::Forbidden(message)
            | QueryError::BadInput(message)
            | QueryError::Refused { message, .. } => message.clone(),
            QueryError::InvalidToken(error) => error.to_string(),
            QueryError::Internal(_) => "internal error".to_owned(),
        }
    }

    /// Whether the request should be refused with 401 before it reaches the schema.
    pub fn is_unauthenticated(&self) -> bool {
        matches!(self, QueryError::Unauthenticated(_) | QueryError::InvalidToken(_))
    }
}

impl From<anyhow::Error> for QueryError {
    fn from(error: anyhow::Error) -> Self {
        tracing::error!(error = format!("{error:#}"), "query failed");
        metrics::counter!("graphql_internal_errors_total").increment(1);
        QueryError::Internal(Arc::new(error))
    }
}

/// SQLSTATE `character_not_in_repertoire`: Postgres text cannot hold NUL (U+0000).
const NUL_IN_TEXT: &str = "22021";

impl From<sqlx::Error> for QueryError {
    fn from(error: sqlx::Error) -> Self {
        // The only text that reaches SQL comes from arguments: a NUL in one is the caller's.
        if error.as_database_error().and_then(|e| e.code()).as_deref() == Some(NUL_IN_TEXT) {
            return QueryError::bad_input("text arguments may not contain NUL (U+0000) characters");
        }
        anyhow::Error::new(error).context("database").into()
    }
}

impl From<QueryError> for async_graphql::Error {
    fn from(error: QueryError) -> Self {
        let code = error.code();
        async_graphql::Error::new(error.message()).extend_with(|_, extensions| {
            extensions.set("code", code);
            match &error {
                QueryError::InvalidToken(token) => extensions.set("reason", token.reason()),
                QueryError::Refused { reason, field, .. } => {
                    extensions.set("reason", reason.as_str());
                    if let Some(field) = field {
                        extensions.set("field", field.as_str());
                    }
                }
                _ => {}
            }
        })
    }
}

/// Shorthand for resolver results.
pub type QueryResult<T> = Result<T, QueryError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause() {
        let error: QueryError = sqlx::Error::Protocol("relation \"balances\" does not exist".into()).into();
        let graphql: async_graphql::Error = error.into();
        assert_eq!(graphql.message, "internal error");
        let shown = serde_json::to_string(&graphql.extensions).unwrap();
        assert_eq!(shown, r#"{"code":"INTERNAL"}"#);
    }

    #[test]
    fn client_errors_keep_their_message_and_code() {
        let graphql: async_graphql::Error = QueryError::bad_input("first: at most 100").into();
        assert_eq!(graphql.message, "first: at most 100");
        let shown = serde_json::to_string(&graphql.extensions).unwrap();
        assert_eq!(shown, r#"{"code":"BAD_USER_INPUT"}"#);
    }

    #[test]
    fn token_refusals_carry_their_reason() {
        let graphql: async_graphql::Error = QueryError::invalid_token(TokenError::Expired).into();
        assert_eq!(graphql.message, "the customer token has expired");
        let shown = serde_json::to_string(&graphql.extensions).unwrap();
        assert_eq!(shown, r#"{"code":"INVALID_CUSTOMER_TOKEN","reason":"expired"}"#);
    }
}
