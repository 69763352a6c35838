//! What a typed call can fail with: the request never got an answer, the API refused it with
//! its JSON error body (`{"error": {"code", "message", "field"}}`), or the answer was not what
//! the contract says.

use std::time::Duration;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

/// The body of every error answer of the command API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `insufficient_points`.
    pub code: String,
    /// What is wrong, for a human.
    pub message: String,
    /// The request field the error is about, if any (`tiers[1].threshold_points`).
    pub field: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No answer: connection refused, timeout, broken body.
    #[error("no answer from the command API: {0}")]
    Transport(#[from] reqwest::Error),
    /// The API refused the request and said why (and, for a refusal to take more load, when
    /// to come back: its `Retry-After`).
    #[error("HTTP {status} {}: {}", .body.error.code, .body.error.message)]
    Api {
        status: StatusCode,
        body: ErrorBody,
        retry_after: Option<Duration>,
    },
    /// A failure status whose body is not the API's error shape (e.g. from a proxy).
    #[error("HTTP {status}: {text}")]
    Status { status: StatusCode, text: String },
    /// The base URL cannot take the endpoint's path.
    #[error("base URL `{0}` cannot take a path")]
    BaseUrl(String),
    /// A success whose body does not match the contract.
    #[error("HTTP {status} answered a body the contract does not describe ({source}): {text}")]
    Contract {
        status: StatusCode,
        text: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// The HTTP status, when there was an answer.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Transport(error) => error.status(),
            Error::BaseUrl(_) => None,
            Error::Api { status, .. } | Error::Status { status, .. } | Error::Contract { status, .. } => {
                Some(*status)
            }
        }
    }

    /// `error.code` of an API refusal.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { body, .. } => Some(&body.error.code),
            _ => None,
        }
    }

    /// A short, stable name of the failure, for counting failures by kind: the status and the
    /// API's code (`HTTP 409 idempotency_key_reused`), or the kind of transport failure (the
    /// message itself varies per request).
    pub fn kind(&self) -> String {
        match self {
            Error::Transport(error) => transport_kind(error).to_owned(),
            Error::Api { status, body, .. } => format!("HTTP {} {}", status.as_u16(), body.error.code),
            Error::Status { status, .. } => format!("HTTP {}", status.as_u16()),
            Error::BaseUrl(_) => "client: bad base URL".to_owned(),
            Error::Contract { .. } => "contract: unexpected success body".to_owned(),
        }
    }

    /// Whether the API refused to take more load (503 `overloaded`, 429 `rate_limited`): the
    /// request changed nothing and may be sent again after [`Error::retry_after`].
    pub fn is_shed(&self) -> bool {
        matches!(
            (self.status(), self.code()),
            (Some(StatusCode::SERVICE_UNAVAILABLE), Some("overloaded"))
                | (Some(StatusCode::TOO_MANY_REQUESTS), Some("rate_limited"))
        )
    }

    /// How long the API asked the caller to wait before sending the request again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Names a transport failure by kind.
pub fn transport_kind(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "transport: timeout"
    } else if error.is_connect() {
        "transport: connect"
    } else if error.is_body() || error.is_decode() {
        "transport: body"
    } else {
        "transport: other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_name_status_and_code() {
        let refused = Error::Api {
            status: StatusCode::CONFLICT,
            body: serde_json::from_str(
                r#"{"error": {"code": "idempotency_key_reused", "message": "m", "field": "Idempotency-Key"}}"#,
            )
            .unwrap(),
            retry_after: None,
        };
        assert!(!refused.is_shed());
        assert_eq!(refused.kind(), "HTTP 409 idempotency_key_reused");
        assert_eq!(refused.code(), Some("idempotency_key_reused"));
        assert_eq!(refused.status(), Some(StatusCode::CONFLICT));
        let bare = Error::Status {
            status: StatusCode::SERVICE_UNAVAILABLE,
            text: String::new(),
        };
        assert_eq!(bare.kind(), "HTTP 503");
    }
}
