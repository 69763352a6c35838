//! The two public contracts the load generator drives (SPEC §8): the JSON command API (through
//! the typed `loyalty-client`) and the GraphQL query API. Everything goes through HTTP exactly as
//! a POS terminal or a storefront widget would send it.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Context as _};
use reqwest::StatusCode;
use serde_json::Value;
use url::Url;

/// Refuses anything but a loopback host: the load generator is a benchmark tool for a platform
/// running on this machine, never a way to load someone else's server.
pub fn require_loopback(what: &str, url: &str) -> anyhow::Result<Url> {
    let parsed = Url::parse(url).with_context(|| format!("{what}: `{url}` is not a URL"))?;
    let loopback = match parsed.host() {
        // Non-special schemes (postgres://) leave even IP addresses as opaque host strings.
        Some(url::Host::Domain(domain)) => {
            domain.eq_ignore_ascii_case("localhost")
                || domain
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
    if !loopback {
        bail!(
            "{what}: {} is not a loopback address; the load generator only targets 127.0.0.1, ::1 or localhost",
            common::config::redact_url(url)
        );
    }
    Ok(parsed)
}

/// A GraphQL answer: status and JSON body (`Value::Null` when the body is empty or not JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// A short, stable name for a failed answer: status plus the error code the body carries,
    /// so the report can count errors by kind.
    pub fn error_kind(&self) -> String {
        let body = &self.body;
        let code = [
            body.pointer("/error/code"),
            body.get("code"),
            body.get("error").filter(|e| e.is_string()),
        ]
        .into_iter()
        .flatten()
        .find_map(Value::as_str);
        match code {
            Some(code) => format!("HTTP {} {code}", self.status.as_u16()),
            None => format!("HTTP {}", self.status.as_u16()),
        }
    }
}

/// A client of the command API and the GraphQL API.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    /// The command API, without a key.
    commands: loyalty_client::Client,
    graphql: Url,
}

impl Api {
    pub fn new(command_url: &str, graphql_url: &str, timeout: Duration) -> anyhow::Result<Self> {
        require_loopback("--command-url", command_url)?;
        let graphql = require_loopback("--graphql-url", graphql_url)?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .pool_max_idle_per_host(usize::MAX)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            commands: loyalty_client::Client::with_http(http.clone(), command_url),
            http,
            graphql,
        })
    }

    /// The command API with `key` (the clients share one connection pool).
    pub fn commands(&self, key: &str) -> loyalty_client::Client {
        self.commands.with_key(key)
    }

    /// Sends a GraphQL request; returns the raw reply (GraphQL errors are in the body).
    pub async fn graphql_raw(
        &self,
        key: &str,
        query: &str,
        variables: &Value,
    ) -> Result<Reply, reqwest::Error> {
        let body = serde_json::json!({ "query": query, "variables": variables });
        let response = self
            .http
            .post(self.graphql.clone())
            .bearer_auth(key)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply { status, body })
    }

    /// Runs a GraphQL query and returns its `data`; any transport, HTTP or GraphQL error fails.
    pub async fn graphql(&self, key: &str, query: &str, variables: &Value) -> anyhow::Result<Value> {
        let reply = self
            .graphql_raw(key, query, variables)
            .await
            .with_context(|| format!("GraphQL request to {}", self.graphql))?;
        graphql_data(reply)
    }
}

/// The `data` of a GraphQL reply, or an error naming what went wrong.
pub fn graphql_data(reply: Reply) -> anyhow::Result<Value> {
    if !reply.is_success() {
        bail!("GraphQL answered {}: {}", reply.status, reply.body);
    }
    if let Some(errors) = reply.body.get("errors").filter(|e| !e.is_null()) {
        bail!("GraphQL errors: {errors}");
    }
    match reply.body.get("data") {
        Some(data) if !data.is_null() => Ok(data.clone()),
        _ => bail!("GraphQL reply without data: {}", reply.body),
    }
}

/// Short kind of a GraphQL reply that is not a clean success, `None` when it is one.
pub fn graphql_error_kind(reply: &Reply) -> Option<String> {
    if !reply.is_success() {
        return Some(reply.error_kind());
    }
    if let Some(errors) = reply.body.get("errors").and_then(Value::as_array) {
        let first = errors
            .first()
            .and_then(|e| {
                e.pointer("/extensions/code")
                    .or_else(|| e.get("message"))
                    .and_then(Value::as_str)
            })
            .unwrap_or("error");
        return Some(format!("GraphQL {first}"));
    }
    match reply.body.get("data") {
        Some(data) if !data.is_null() => None,
        _ => Some("GraphQL no data".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:8080/x",
            "http://[::1]:8080",
            "postgres://postgres:pw@127.0.0.1:5432/loyalty",
            "http://127.0.0.2:1",
            "postgres://localhost/loyalty",
            "postgres://[::1]:5432/loyalty",
        ] {
            assert!(require_loopback("t", ok).is_ok(), "{ok} refused");
        }
        for bad in [
            "http://10.0.0.1:8080",
            "http://example.com",
            "http://0.0.0.0:8080",
            "postgres://u:secret@db.internal/x",
            "not a url",
        ] {
            let error = require_loopback("--command-url", bad).unwrap_err().to_string();
            assert!(error.starts_with("--command-url"), "{error}");
            assert!(!error.contains("secret"), "{error}");
        }
    }

    #[test]
    fn error_kinds_name_status_and_code() {
        let reply = |status: u16, body: Value| Reply {
            status: StatusCode::from_u16(status).unwrap(),
            body,
        };
        assert_eq!(
            reply(
                409,
                serde_json::json!({"error": {"code": "idempotency_conflict"}})
            )
            .error_kind(),
            "HTTP 409 idempotency_conflict"
        );
        assert_eq!(
            reply(422, serde_json::json!({"code": "insufficient_points"})).error_kind(),
            "HTTP 422 insufficient_points"
        );
        assert_eq!(
            reply(400, serde_json::json!({"error": "bad_request", "field": "x"})).error_kind(),
            "HTTP 400 bad_request"
        );
        assert_eq!(reply(503, Value::Null).error_kind(), "HTTP 503");
    }

    #[test]
    fn graphql_replies_are_classified() {
        let ok = Reply {
            status: StatusCode::OK,
            body: serde_json::json!({"data": {"__typename": "Query"}}),
        };
        assert_eq!(graphql_error_kind(&ok), None);
        let failed = Reply {
            status: StatusCode::OK,
            body: serde_json::json!({"data": null, "errors": [{"message": "forbidden"}]}),
        };
        assert_eq!(graphql_error_kind(&failed).as_deref(), Some("GraphQL forbidden"));
        assert!(graphql_data(failed).is_err());
        assert_eq!(
            graphql_data(ok).unwrap(),
            serde_json::json!({"__typename": "Query"})
        );
    }
}
