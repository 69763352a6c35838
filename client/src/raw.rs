//! The escape hatch: any method, path and body, and the answer exactly as received. For what
//! the typed calls cannot send on purpose (malformed JSON, a missing `Idempotency-Key`, an
//! unknown route) and for checking the wire format itself.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, ErrorBody};
use crate::Client;

/// An answer of the command API, as received.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body exactly as received.
    pub text: String,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
}

impl RawResponse {
    pub(crate) async fn read(response: reqwest::Response) -> Result<Self, reqwest::Error> {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Self {
            status,
            headers,
            text,
            body,
        })
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `error.code` of an error answer.
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    /// `error.field` of an error answer.
    pub fn error_field(&self) -> Option<&str> {
        self.body["error"]["field"].as_str()
    }

    /// The `type`s of the events of a write answer.
    pub fn event_types(&self) -> Vec<String> {
        self.body["events"]
            .as_array()
            .map(|events| {
                events
                    .iter()
                    .filter_map(|event| event["type"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `Retry-After` header, in its delay-seconds form (the only form the API sends).
    pub fn retry_after(&self) -> Option<Duration> {
        let value = self.headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
        value.trim().parse().ok().map(Duration::from_secs)
    }

    /// The typed success body, or the typed failure.
    pub fn into_typed<T: DeserializeOwned>(self) -> Result<T, Error> {
        let status =
            reqwest::StatusCode::from_u16(self.status).unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR);
        if !self.is_success() {
            let retry_after = self.retry_after();
            return Err(match serde_json::from_value::<ErrorBody>(self.body) {
                Ok(body) => Error::Api {
                    status,
                    body,
                    retry_after,
                },
                Err(_) => Error::Status {
                    status,
                    text: self.text,
                },
            });
        }
        serde_json::from_str(&self.text).map_err(|source| Error::Contract {
            status,
            text: self.text,
            source,
        })
    }
}

impl Client {
    fn raw_request(
        &self,
        method: Method,
        path: &str,
        idempotency_key: Option<&str>,
    ) -> reqwest::RequestBuilder {
        // The path is appended as given, unnormalised: tests send odd paths on purpose.
        let mut request = self.http.request(method, format!("{}{path}", self.base_url));
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        if let Some(token) = &self.customer_token {
            request = request.header(crate::CUSTOMER_TOKEN, token);
        }
        if let Some(idempotency_key) = idempotency_key {
            request = request.header(crate::IDEMPOTENCY_KEY, idempotency_key);
        }
        request
    }

    /// Sends `body` (when given) as JSON to `path` (`/v1/...`), with the `Idempotency-Key`
    /// when given.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        idempotency_key: Option<&str>,
        body: Option<&Value>,
    ) -> Result<RawResponse, reqwest::Error> {
        let mut request = self.raw_request(method, path, idempotency_key);
        if let Some(body) = body {
            request = request.json(body);
        }
        RawResponse::read(request.send().await?).await
    }

    /// Sends `body` as raw bytes, with `content_type` when given.
    pub async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        idempotency_key: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<RawResponse, reqwest::Error> {
        let mut request = self.raw_request(method, path, idempotency_key).body(body);
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        RawResponse::read(request.send().await?).await
    }
}
