//! The path every write takes: reserve the `Idempotency-Key`, run the command, store the exact
//! response (or release the key if the command failed), answer.
//!
//! The work runs in a task of its own, so a client that hangs up (or a proxy timeout) cannot
//! cancel a command half-way between appending its events and storing its response; graceful
//! shutdown waits for these tasks.

use std::future::Future;

use anyhow::Context as _;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope};
use serde::Serialize;
use serde_json::Value;
use tracing::{Instrument as _, Span};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::commands::{CommandContext, MemberOutcome};
use crate::http::error::ApiError;
use crate::http::extract::RequestContext;
use crate::http::AppState;
use crate::idempotency::{self, Reservation};

/// Header set on a response replayed from an earlier request with the same `Idempotency-Key`.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// An appended event as returned by a write.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventView {
    /// Stable event type name, e.g. `PurchaseRecorded`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Version of the event's schema.
    pub version: String,
    /// Sequence number of the event in its aggregate.
    pub sequence: u64,
    /// The event's fields.
    #[schema(value_type = Object)]
    pub payload: Value,
}

impl EventView {
    pub fn from_envelope<A: Aggregate>(envelope: &EventEnvelope<A>) -> anyhow::Result<Self> {
        let event_type = envelope.payload.event_type();
        // Events are externally tagged enums, `{"PurchaseRecorded": {...}}`: the type is
        // already a field of its own, so show the inner object.
        let payload = match serde_json::to_value(&envelope.payload).context("serializing an event")? {
            Value::Object(mut map) if map.len() == 1 && map.contains_key(&event_type) => {
                map.remove(&event_type).unwrap_or(Value::Null)
            }
            other => other,
        };
        Ok(Self {
            version: envelope.payload.event_version(),
            sequence: envelope.sequence as u64,
            event_type,
            payload,
        })
    }

    pub fn list<A: Aggregate>(envelopes: &[EventEnvelope<A>]) -> anyhow::Result<Vec<Self>> {
        envelopes.iter().map(Self::from_envelope).collect()
    }
}

/// The answer to every member command.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberWriteResponse {
    pub member_id: Uuid,
    /// The events this request appended (empty when it changed nothing, e.g. a purchase whose
    /// `transaction_id` was already recorded).
    pub events: Vec<EventView>,
    /// The member's points balance after the command.
    pub balance: i64,
}

impl MemberWriteResponse {
    pub fn from_outcome(outcome: &MemberOutcome) -> anyhow::Result<Value> {
        let response = Self {
            member_id: outcome.member_id,
            events: EventView::list(&outcome.events)?,
            balance: outcome.balance,
        };
        serde_json::to_value(response).context("serializing a response")
    }
}

struct Written {
    status: StatusCode,
    body: String,
    replayed: bool,
}

/// Runs `work` under the request's `Idempotency-Key` (see the module docs).
#[allow(clippy::too_many_arguments)]
pub async fn idempotent<F, Fut>(
    app: &AppState,
    caller: &Caller,
    ctx: &RequestContext,
    org: &str,
    body: &Value,
    span: Span,
    work: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(AppState, CommandContext) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(StatusCode, Value), ApiError>> + Send + 'static,
{
    let key = ctx.idempotency_key()?.to_owned();
    let hash = idempotency::request_hash(ctx.method.as_str(), &ctx.path, body);
    let command_ctx = CommandContext {
        org_id: org.to_owned(),
        idempotency_key: key,
        key_id: caller.0.key_id,
        request_id: ctx.request_id.clone(),
    };
    let task_app = app.clone();
    let task = async move {
        let store = task_app.idempotency().clone();
        let reservation = store
            .reserve(
                &command_ctx.org_id,
                &command_ctx.idempotency_key,
                &hash,
                command_ctx.key_id,
            )
            .await?;
        let lease = match reservation {
            Reservation::Replay { status, body } => {
                return Ok(Written {
                    status: StatusCode::from_u16(status).context("stored status code")?,
                    body,
                    replayed: true,
                });
            }
            Reservation::InProgress => return Err(ApiError::RequestInProgress),
            Reservation::Reused => return Err(ApiError::IdempotencyKeyReused),
            Reservation::Acquired(lease) => lease,
        };
        let work = work(task_app, command_ctx);
        tokio::pin!(work);
        // The reservation is renewed while the command runs, so that only a request that died
        // loses it; the first tick is immediate and skipped.
        let mut renew = tokio::time::interval(store.lease() / 3);
        renew.tick().await;
        let result = loop {
            tokio::select! {
                result = &mut work => break result,
                _ = renew.tick() => {
                    if let Err(error) = store.renew(&lease).await {
                        tracing::warn!(error = format!("{error:#}"), "could not renew an idempotency lease");
                    }
                }
            }
        };
        match result {
            Ok((status, value)) => {
                let body = serde_json::to_string(&value).context("serializing a response")?;
                if let Err(error) = store.complete(&lease, status.as_u16(), &body).await {
                    // The command is done; a retry after the lease finds its events (module
                    // docs of `idempotency`), so answer rather than fail.
                    tracing::error!(
                        error = format!("{error:#}"),
                        "could not store an idempotent response"
                    );
                }
                Ok(Written {
                    status,
                    body,
                    replayed: false,
                })
            }
            Err(error) => {
                if let Err(release_error) = store.release(&lease).await {
                    tracing::error!(
                        error = format!("{release_error:#}"),
                        "could not release an idempotency key; it frees itself when its lease ends"
                    );
                }
                Err(error)
            }
        }
    }
    .instrument(span);
    let written = app
        .tasks()
        .spawn(task)
        .await
        .map_err(|error| ApiError::Internal(anyhow::anyhow!(error).context("command task")))??;

    let mut response = (written.status, written.body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if written.replayed {
        headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    Ok(response)
}
