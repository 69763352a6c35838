//! The paths a write takes under its `Idempotency-Key` (see `idempotency`): a member command
//! stores its exact response with its events, or, if it appended nothing, right after; every
//! other write reserves the key, runs the command, stores the exact response (or releases the key
//! if the command failed), and answers.
//!
//! The work runs in a task of its own, so a client that hangs up (or a proxy timeout) cannot
//! cancel a command half-way between appending its events and storing its response; graceful
//! shutdown waits for these tasks.

use std::future::Future;

use anyhow::Context as _;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope};
use domain::member::earn::Breakdown;
use serde::Serialize;
use serde_json::Value;
use tracing::{Instrument as _, Span};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::commands::{Answer, CommandContext, MemberOutcome};
use crate::http::error::ApiError;
use crate::http::promotion_docs::BreakdownDoc;
use crate::http::state::AppState;
use crate::idempotency::{Idempotency, Lease, Reservation};

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
    /// Why the purchase earned what it earned (purchases only): the breakdown its
    /// `PurchaseRecorded` event records (also when the purchase was recorded earlier).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BreakdownDoc>)]
    pub breakdown: Option<Breakdown>,
}

impl MemberWriteResponse {
    pub fn from_outcome(outcome: &MemberOutcome) -> anyhow::Result<Value> {
        let response = Self {
            member_id: outcome.member_id,
            events: EventView::list(&outcome.events)?,
            balance: outcome.balance,
            breakdown: outcome.breakdown.clone(),
        };
        serde_json::to_value(response).context("serializing a response")
    }

    /// The body answered for `outcome`, exactly as sent, stored and replayed.
    pub fn render(outcome: &MemberOutcome) -> anyhow::Result<String> {
        serde_json::to_string(&Self::from_outcome(outcome)?).context("serializing a response")
    }
}

struct Written {
    status: StatusCode,
    body: String,
    replayed: bool,
}

/// A write request ready to run under its `Idempotency-Key` (built by
/// [`Write`](crate::http::command_request::Write)).
pub struct Idempotent {
    pub app: AppState,
    /// Who asked, recorded in the events' metadata.
    pub command: CommandContext,
    /// The request's fingerprint (`idempotency::request_hash`).
    pub request_hash: String,
    /// The command's span, which the work runs in.
    pub span: Span,
}

impl Idempotent {
    /// Runs `work` under the request's `Idempotency-Key` (see the module docs).
    pub async fn run<F, Fut>(self, work: F) -> Result<Response, ApiError>
    where
        F: FnOnce(AppState, CommandContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(StatusCode, Value), ApiError>> + Send + 'static,
    {
        let Self {
            app,
            command,
            request_hash,
            span,
        } = self;
        let task = write_once(app.clone(), command, request_hash, work).instrument(span);
        in_own_task(&app, task).await
    }

    /// Runs a member command whose answer, `status` and the outcome's body, is stored with its
    /// events: no reservation first (module docs of `idempotency`).
    pub async fn run_member<F, Fut>(self, status: StatusCode, work: F) -> Result<Response, ApiError>
    where
        F: FnOnce(AppState, CommandContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<MemberOutcome, ApiError>> + Send + 'static,
    {
        let Self {
            app,
            command,
            request_hash,
            span,
        } = self;
        let task = answer_member(app.clone(), command, request_hash, status, work).instrument(span);
        in_own_task(&app, task).await
    }
}

/// Runs a write in a task of its own (module docs) and answers what it wrote.
async fn in_own_task(
    app: &AppState,
    task: impl Future<Output = Result<Written, ApiError>> + Send + 'static,
) -> Result<Response, ApiError> {
    let written = app
        .tasks()
        .spawn(task)
        .await
        .map_err(|error| ApiError::Internal(anyhow::anyhow!(error).context("command task")))??;
    Ok(written.into_response())
}

impl IntoResponse for Written {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.replayed {
            headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        }
        response
    }
}

/// Reserves the key, runs `work` and stores its answer, or replays the stored one.
async fn write_once<F, Fut>(
    app: AppState,
    ctx: CommandContext,
    request_hash: String,
    work: F,
) -> Result<Written, ApiError>
where
    F: FnOnce(AppState, CommandContext) -> Fut,
    Fut: Future<Output = Result<(StatusCode, Value), ApiError>>,
{
    let store = app.idempotency().clone();
    let reservation = store
        .reserve(&ctx.org_id, &ctx.idempotency_key, &request_hash, ctx.key_id)
        .await?;
    let lease = match reservation {
        Reservation::Acquired(lease) => lease,
        taken => return answer_taken(taken),
    };
    match renewing(&store, &lease, work(app, ctx)).await {
        Ok((status, value)) => {
            let body = serde_json::to_string(&value).context("serializing a response")?;
            if let Err(error) = store.complete(&lease, status.as_u16(), &body).await {
                // The command is done; a retry after the lease finds its events (module docs
                // of `idempotency`), so answer rather than fail.
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

/// Runs a member command and answers it: with the answer stored with its events, or, when it
/// appended nothing, with the key's record (stored now if the key is free).
async fn answer_member<F, Fut>(
    app: AppState,
    mut ctx: CommandContext,
    request_hash: String,
    status: StatusCode,
    work: F,
) -> Result<Written, ApiError>
where
    F: FnOnce(AppState, CommandContext) -> Fut,
    Fut: Future<Output = Result<MemberOutcome, ApiError>>,
{
    let answer = Answer {
        request_hash,
        status: status.as_u16(),
        render: MemberWriteResponse::render,
    };
    ctx.answer = Some(answer.clone());
    let store = app.idempotency().clone();
    match work(app, ctx.clone()).await {
        Ok(MemberOutcome {
            stored_answer: Some(body),
            ..
        }) => Ok(Written {
            status,
            body,
            replayed: false,
        }),
        Ok(outcome) => {
            // A duplicate, or a command that changed nothing: this request's answer unless the
            // key already holds one.
            let record = answer.record(&ctx, &outcome)?;
            match store.settle(&record).await? {
                None => Ok(Written {
                    status,
                    body: record.body,
                    replayed: false,
                }),
                Some(taken) => answer_taken(taken),
            }
        }
        Err(error) => {
            // Refused, or its key was taken: a key that holds an answer or another request
            // decides what this request is told.
            match store
                .found(&ctx.org_id, &ctx.idempotency_key, &answer.request_hash)
                .await
            {
                Ok(Some(taken)) => answer_taken(taken),
                Ok(None) => Err(error),
                Err(lookup) => {
                    tracing::warn!(error = format!("{lookup:#}"), "could not read an idempotency key");
                    Err(error)
                }
            }
        }
    }
}

/// The answer to a request whose key another request holds or answered.
fn answer_taken(taken: Reservation) -> Result<Written, ApiError> {
    match taken {
        Reservation::Replay { status, body } => Ok(Written {
            status: StatusCode::from_u16(status).context("stored status code")?,
            body,
            replayed: true,
        }),
        Reservation::Reused => Err(ApiError::IdempotencyKeyReused),
        Reservation::InProgress | Reservation::Acquired(_) => Err(ApiError::RequestInProgress),
    }
}

/// Runs `work` while renewing `lease`, so that only a request that died loses its key.
async fn renewing<T>(store: &Idempotency, lease: &Lease, work: impl Future<Output = T>) -> T {
    tokio::pin!(work);
    // The first tick is immediate: skipped.
    let mut renew = tokio::time::interval(store.lease() / 3);
    renew.tick().await;
    loop {
        tokio::select! {
            result = &mut work => return result,
            _ = renew.tick() => {
                if let Err(error) = store.renew(lease).await {
                    tracing::warn!(error = format!("{error:#}"), "could not renew an idempotency lease");
                }
            }
        }
    }
}
