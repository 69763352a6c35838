//! The one error type of the GraphQL boundary.
//!
//! Every error a client sees carries `extensions.code`: `UNAUTHENTICATED`, `FORBIDDEN`,
//! `BAD_USER_INPUT` or `INTERNAL`. Internal failures (SQL, a malformed row, NATS) are logged with
//! their full chain and reach the client only as "internal error": no SQL, table or driver text
//! ever leaks.
//!
//! `QueryError` deliberately does not implement `Display`: async-graphql converts anything
//! `Display` into an error carrying its text verbatim, so the only way from a `QueryError` to a
//! GraphQL error is [`From<QueryError> for async_graphql::Error`], which applies the mapping.

use std::sync::Arc;

use async_graphql::ErrorExtensions as _;

/// Why a query failed.
#[derive(Debug, Clone)]
pub enum QueryError {
    /// No or no usable credentials.
    Unauthenticated(String),
    /// A valid key that may not read this.
    Forbidden(String),
    /// A bad argument; the message names it.
    BadInput(String),
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

    /// The `extensions.code` of the error.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::Unauthenticated(_) => "UNAUTHENTICATED",
            QueryError::Forbidden(_) => "FORBIDDEN",
            QueryError::BadInput(_) => "BAD_USER_INPUT",
            QueryError::Internal(_) => "INTERNAL",
        }
    }

    /// What the client is told.
    pub fn message(&self) -> &str {
        match self {
            QueryError::Unauthenticated(message)
            | QueryError::Forbidden(message)
            | QueryError::BadInput(message) => message,
            QueryError::Internal(_) => "internal error",
        }
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
}
