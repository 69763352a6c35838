//! Extractors that turn every malformed part of a request into an [`ApiError`] naming it.
//!
//! The body extractor never rejects by itself: [`Write`](crate::http::command_request::Write)
//! first authorizes the caller and only then looks at the body, so a key of another org learns
//! nothing from body validation.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use domain::ids::{check_business_id, is_slug};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower_http::request_id::RequestId;
use uuid::Uuid;

use crate::commands::MemberRef;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::idempotency;

/// What every write needs to know about its request besides the body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub method: Method,
    pub path: String,
    idempotency_key: Option<Result<String, ()>>,
}

impl RequestContext {
    /// The `Idempotency-Key` header, required on every write.
    pub fn idempotency_key(&self) -> Result<&str, ApiError> {
        match &self.idempotency_key {
            None => Err(ApiError::IdempotencyKey("is required on every POST and PUT")),
            Some(Err(())) => Err(ApiError::IdempotencyKey("must be visible ASCII characters")),
            Some(Ok(key)) => {
                idempotency::validate_key(key).map_err(ApiError::IdempotencyKey)?;
                Ok(key)
            }
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let idempotency_key = parts
            .headers
            .get("idempotency-key")
            .map(|value| value.to_str().map(str::to_owned).map_err(|_| ()));
        Ok(Self {
            request_id,
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            idempotency_key,
        })
    }
}

/// A JSON request body, checked for content type and size, parsed on demand.
pub struct JsonBody {
    bytes: Result<Bytes, ApiError>,
    is_json: bool,
}

impl FromRequest<AppState> for JsonBody {
    type Rejection = Infallible;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        let limit = state.max_body_bytes();
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::BadRequest {
                    code: "unreadable_body",
                    message: rejection.body_text(),
                    field: None,
                }
            }
        });
        Ok(Self { bytes, is_json })
    }
}

impl JsonBody {
    /// The body as `T` (unknown fields refused by `T`'s serde attributes), and as a JSON value
    /// for the idempotency fingerprint.
    pub fn parse<T: DeserializeOwned>(self) -> Result<(T, Value), ApiError> {
        if !self.is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse_bytes(&self.bytes?)
    }

    /// Like [`JsonBody::parse`], but an empty body (with or without a content type) reads as
    /// `{}`: for commands whose every field is optional.
    pub fn parse_optional<T: DeserializeOwned>(self) -> Result<(T, Value), ApiError> {
        match &self.bytes {
            Ok(bytes) if bytes.is_empty() => parse_bytes(b"{}"),
            _ => self.parse(),
        }
    }
}

fn parse_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, Value), ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|error| body_error(".", &error))?;
    // serde would also read a struct from an array of its fields in order: refuse that.
    if !value.is_object() {
        return Err(ApiError::BadRequest {
            code: "invalid_body",
            message: "the body must be a JSON object".to_owned(),
            field: None,
        });
    }
    // Event payloads are stored through jsonb, which cannot hold NUL: refuse it here rather
    // than fail the append with a 500 (found by schemathesis in a free-text `reason`).
    if let Some(field) = nul_in(&value, ".") {
        return Err(ApiError::BadRequest {
            code: "invalid_body",
            message: "text must not contain NUL (U+0000) characters".to_owned(),
            field: Some(field),
        });
    }
    // Parsed from the bytes rather than the value, so that duplicate keys are refused.
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed: T = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| body_error(&error.path().to_string(), error.inner()))?;
    Ok((parsed, value))
}

/// The path of the first text (value or key) holding a NUL character, if any.
fn nul_in(value: &Value, path: &str) -> Option<String> {
    match value {
        Value::String(text) if text.contains('\0') => Some(path.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_in(item, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            let path = if path == "." {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if key.contains('\0') {
                Some(path)
            } else {
                nul_in(item, &path)
            }
        }),
        _ => None,
    }
}

fn body_error(path: &str, inner: &serde_json::Error) -> ApiError {
    let message = inner.to_string();
    let syntax = matches!(
        inner.classify(),
        serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof
            | serde_json::error::Category::Io
    );
    if syntax {
        return ApiError::BadRequest {
            code: "malformed_json",
            message: format!("the body is not valid JSON: {message}"),
            field: None,
        };
    }
    // serde names a missing or unknown field in its message.
    let named = ["missing field `", "unknown field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    let code = if message.starts_with("missing field") {
        "missing_field"
    } else if message.starts_with("unknown field") {
        "unknown_field"
    } else if message.starts_with("duplicate field") {
        "duplicate_field"
    } else {
        "invalid_field"
    };
    // serde_path_to_error already ends the path with an unknown field's name, not with a
    // missing or duplicate one's.
    let field = match (path, named) {
        (".", Some(name)) => Some(name.to_owned()),
        (".", None) => None,
        (path, Some(name)) if path == name || path.ends_with(&format!(".{name}")) => Some(path.to_owned()),
        (parent, Some(name)) => Some(format!("{parent}.{name}")),
        (path, None) => Some(path.to_owned()),
    };
    // serde's messages end with " at line 1 column 42": useful, keep them.
    ApiError::BadRequest {
        code,
        message: match &field {
            Some(field) => format!("{field}: {message}"),
            None => message,
        },
        field,
    }
}

pub(crate) async fn path_params(parts: &mut Parts) -> Result<HashMap<String, String>, ApiError> {
    Path::<HashMap<String, String>>::from_request_parts(parts, &())
        .await
        .map(|Path(params)| params)
        .map_err(|rejection| ApiError::BadRequest {
            code: "invalid_path",
            message: rejection.body_text(),
            field: None,
        })
}

pub(crate) fn org_param(params: &HashMap<String, String>) -> Result<String, ApiError> {
    let org = params
        .get("org")
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("route without an {{org}} parameter")))?;
    // An org that is not a slug cannot own a key, so the caller's key will not match it either;
    // the 400 only tells a well-meaning client what is wrong with its URL.
    if !is_slug(org) {
        return Err(ApiError::invalid(
            "invalid_org_id",
            "org",
            format!("org: '{org}' is not a valid org id ([a-z0-9][a-z0-9-]{{0,62}})"),
        ));
    }
    Ok(org.clone())
}

/// The `{org}` of the path.
pub struct OrgPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for OrgPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let params = path_params(parts).await?;
        Ok(OrgPath(org_param(&params)?))
    }
}

/// The `{org}` and the member of the path: `{member_id}` (a UUID) or
/// `by-external-id/{external_id}`.
pub struct MemberPath {
    pub org: String,
    pub member: Result<MemberRef, ApiError>,
}

impl MemberPath {
    /// How the member is named, for tracing.
    pub fn label(&self) -> String {
        match &self.member {
            Ok(MemberRef::Id(id)) => id.to_string(),
            Ok(MemberRef::ExternalId(external_id)) => format!("external:{external_id}"),
            Err(_) => "invalid".to_owned(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for MemberPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let params = path_params(parts).await?;
        let org = org_param(&params)?;
        // Checked after authorization (see the module docs), hence kept as a Result.
        let member = if let Some(member_id) = params.get("member_id") {
            Uuid::parse_str(member_id).map(MemberRef::Id).map_err(|_| {
                ApiError::invalid(
                    "invalid_member_id",
                    "member_id",
                    format!("member_id: '{member_id}' is not a UUID"),
                )
            })
        } else if let Some(external_id) = params.get("external_id") {
            check_business_id(external_id)
                .map(|()| MemberRef::ExternalId(external_id.clone()))
                .map_err(|problem| {
                    ApiError::invalid("invalid_id", "external_id", format!("external_id: {problem}"))
                })
        } else {
            Err(ApiError::Internal(anyhow::anyhow!(
                "member route without a member parameter"
            )))
        };
        Ok(MemberPath { org, member })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ProgramConfig;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Purchase {
        transaction_id: String,
        amount_minor: i64,
    }

    fn parse<T: DeserializeOwned>(text: &str) -> Result<T, ApiError> {
        JsonBody {
            bytes: Ok(Bytes::copy_from_slice(text.as_bytes())),
            is_json: true,
        }
        .parse::<T>()
        .map(|(parsed, _)| parsed)
    }

    fn field_and_code(error: ApiError) -> (Option<String>, &'static str) {
        (error.field(), error.code())
    }

    #[test]
    fn a_nul_in_any_text_is_refused_with_its_field() {
        let error = parse::<Value>(r#"{"reason":"a\u0000b","delta":1}"#).unwrap_err();
        assert_eq!(field_and_code(error), (Some("reason".to_owned()), "invalid_body"));
        let error = parse::<Value>(r#"{"tiers":[{"name":"ok"},{"name":"\u0000"}]}"#).unwrap_err();
        assert_eq!(
            field_and_code(error),
            (Some("tiers[1].name".to_owned()), "invalid_body")
        );
    }

    #[test]
    fn body_errors_name_the_field() {
        let cases = [
            (r#"{"transaction_id":"t"}"#, Some("amount_minor"), "missing_field"),
            (
                r#"{"transaction_id":"t","amount_minor":1,"points":5}"#,
                Some("points"),
                "unknown_field",
            ),
            (
                r#"{"transaction_id":"t","amount_minor":"1"}"#,
                Some("amount_minor"),
                "invalid_field",
            ),
            (
                r#"{"transaction_id":"t","amount_minor":1.5}"#,
                Some("amount_minor"),
                "invalid_field",
            ),
            (
                r#"{"transaction_id":"t","amount_minor":1"#,
                None,
                "malformed_json",
            ),
            (
                r#"{"transaction_id":"t","amount_minor":1} x"#,
                None,
                "malformed_json",
            ),
            ("", None, "malformed_json"),
            ("[]", None, "invalid_body"),
            (r#"["t", 1]"#, None, "invalid_body"),
            (
                r#"{"transaction_id":"t","amount_minor":1,"amount_minor":2}"#,
                Some("amount_minor"),
                "duplicate_field",
            ),
        ];
        for (body, field, code) in cases {
            let error = parse::<Purchase>(body).unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(field_and_code(error), (field.map(str::to_owned), code), "{body}");
        }
    }

    #[test]
    fn nested_fields_get_their_path() {
        let body = r#"{"currency":"EUR","tiers":[{"name":"A","threshold_points":0,"multiplier_bps":10000,"colour":"red"}]}"#;
        let error = parse::<ProgramConfig>(body).unwrap_err();
        assert_eq!(
            field_and_code(error),
            (Some("tiers[0].colour".to_owned()), "unknown_field")
        );

        let body =
            r#"{"currency":"EUR","tiers":[{"name":"A","threshold_points":"zero","multiplier_bps":10000}]}"#;
        let error = parse::<ProgramConfig>(body).unwrap_err();
        assert_eq!(
            field_and_code(error),
            (Some("tiers[0].threshold_points".to_owned()), "invalid_field")
        );
    }
}
