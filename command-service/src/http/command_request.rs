//! The extractor every write handler takes, [`Write`]: it authorizes the caller for the command,
//! checks the `Idempotency-Key`, parses the body and opens the command's span, so that a handler
//! is only what its command does.
//!
//! The order of the checks is part of the API: a caller learns nothing about a request it may not
//! make, so authorization comes before the key, the member of the path and the body (see
//! [`extract`](crate::http::extract)).

use std::future::Future;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::commands::{CommandContext, CommandError, Commands, MemberOutcome, MemberRef};
use crate::http::auth::{Action, Caller};
use crate::http::error::ApiError;
use crate::http::extract::{JsonBody, MemberPath, OrgPath, RequestContext};
use crate::http::state::AppState;
use crate::http::write::Idempotent;
use crate::idempotency;

/// The body of a command: what it is called and who may send it.
pub trait CommandRequest: DeserializeOwned + Send + 'static {
    /// What the caller's key must be allowed to do.
    const ACTION: Action;

    /// The command's name, for the span.
    fn command() -> &'static str;

    /// Whether an empty body stands for `{}` (a command whose every field is optional).
    const BODY_OPTIONAL: bool = false;

    /// The member the span names when the path names none (an enrolment names its own).
    fn span_member(&self) -> Option<String> {
        None
    }

    /// How a body that does not parse is answered (as parsed by default: 400 naming the field).
    fn body_error(error: ApiError) -> ApiError {
        error
    }
}

/// The body of a command on one member, named by the path.
pub trait MemberRequest: CommandRequest {
    /// Runs the command.
    fn execute(
        self,
        commands: &Commands,
        ctx: &CommandContext,
        member: &MemberRef,
    ) -> impl Future<Output = Result<MemberOutcome, CommandError>> + Send;
}

/// What the path of a write names.
pub trait Target: FromRequestParts<AppState, Rejection = ApiError> + Send {
    /// What the command runs on once the path is checked.
    type Resolved: Send + 'static;

    fn org(&self) -> &str;

    /// The member, for the span.
    fn span_member(&self) -> Option<String>;

    /// The member the path names, when it names one well-formed.
    fn named_member(&self) -> Option<&MemberRef> {
        None
    }

    /// The checked target; a malformed member id is refused only here, after authorization.
    fn resolve(self) -> Result<Self::Resolved, ApiError>;
}

impl Target for OrgPath {
    type Resolved = ();

    fn org(&self) -> &str {
        &self.0
    }

    fn span_member(&self) -> Option<String> {
        None
    }

    fn resolve(self) -> Result<(), ApiError> {
        Ok(())
    }
}

impl Target for MemberPath {
    type Resolved = MemberRef;

    fn org(&self) -> &str {
        &self.org
    }

    fn span_member(&self) -> Option<String> {
        Some(self.label())
    }

    fn named_member(&self) -> Option<&MemberRef> {
        self.member.as_ref().ok()
    }

    fn resolve(self) -> Result<MemberRef, ApiError> {
        self.member
    }
}

/// A write request, authorized and parsed, ready to run under its `Idempotency-Key`.
pub struct Write<P: Target, T> {
    request: T,
    target: P::Resolved,
    idempotent: Idempotent,
}

/// A write on the org named by the path.
pub type OrgWrite<T> = Write<OrgPath, T>;
/// A write on the member named by the path.
pub type MemberWrite<T> = Write<MemberPath, T>;

impl<P: Target, T: CommandRequest> FromRequest<AppState> for Write<P, T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, app: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = request.into_parts();
        let caller = Caller::from_request_parts(&mut parts, app).await?;
        let path = P::from_request_parts(&mut parts, app).await?;
        let Ok(ctx) = RequestContext::from_request_parts(&mut parts, app).await;
        let Ok(body) = JsonBody::from_request(Request::from_parts(parts, body), app).await;

        caller.authorize(path.org(), T::ACTION)?;
        if let Some(customer) = &caller.customer {
            // A customer acts only for the member its token names: checked before anything
            // else of the request is looked at, with one answer for another member and for no
            // member at all.
            let commands = app.commands();
            let own = commands.customer_member(path.org(), &customer.subject).await?;
            let named = match path.named_member() {
                Some(member) => commands.resolve(path.org(), member).await.ok(),
                None => None,
            };
            if own.is_none() || own != named {
                return Err(ApiError::NotYourMember);
            }
        }
        let key = ctx.idempotency_key()?.to_owned();
        let org = path.org().to_owned();
        let path_member = path.span_member();
        let target = path.resolve()?;
        let parsed = if T::BODY_OPTIONAL {
            body.parse_optional()
        } else {
            body.parse()
        };
        let (request, raw): (T, Value) = parsed.map_err(T::body_error)?;

        let span = tracing::info_span!(
            "command",
            org = %org,
            member = tracing::field::Empty,
            command = T::command()
        );
        if let Some(member) = path_member.or_else(|| request.span_member()) {
            span.record("member", member);
        }
        let idempotent = Idempotent {
            app: app.clone(),
            request_hash: idempotency::request_hash(ctx.method.as_str(), &ctx.path, &raw),
            command: CommandContext {
                org_id: org,
                idempotency_key: key,
                key_id: caller.key.key_id,
                request_id: ctx.request_id,
                answer: None,
            },
            span,
        };
        Ok(Self {
            request,
            target,
            idempotent,
        })
    }
}

impl<T: CommandRequest> Write<OrgPath, T> {
    /// Runs `work` under the request's `Idempotency-Key`; it answers a status and a JSON body.
    pub async fn run<F, Fut>(self, work: F) -> Result<Response, ApiError>
    where
        F: FnOnce(AppState, CommandContext, T) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(StatusCode, Value), ApiError>> + Send + 'static,
    {
        self.run_on(move |app, ctx, (), request| work(app, ctx, request))
            .await
    }
}

impl<P: Target, T: CommandRequest> Write<P, T> {
    /// Runs `work` on what the path names under the request's `Idempotency-Key`; it answers a
    /// status and a JSON body.
    pub async fn run_on<F, Fut>(self, work: F) -> Result<Response, ApiError>
    where
        F: FnOnce(AppState, CommandContext, P::Resolved, T) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(StatusCode, Value), ApiError>> + Send + 'static,
    {
        let (request, target) = (self.request, self.target);
        self.idempotent
            .run(move |app, ctx| work(app, ctx, target, request))
            .await
    }
}

impl<P: Target, T: CommandRequest> Write<P, T> {
    /// The checked request without the `Idempotency-Key` machinery, for a write that is
    /// idempotent by an id derived from the key and whose answer must never be stored (it
    /// shows a secret): the state, who asked, the target, the body and the command's span.
    pub fn into_parts(self) -> (AppState, CommandContext, P::Resolved, T, tracing::Span) {
        let Idempotent {
            app, command, span, ..
        } = self.idempotent;
        (app, command, self.target, self.request, span)
    }
}

impl<P: Target, T: CommandRequest> Write<P, T> {
    /// Runs a member command whose answer (`status` and the outcome) is stored with its events
    /// under the request's `Idempotency-Key`.
    pub async fn run_member<F, Fut>(self, status: StatusCode, work: F) -> Result<Response, ApiError>
    where
        F: FnOnce(AppState, CommandContext, P::Resolved, T) -> Fut + Send + 'static,
        Fut: Future<Output = Result<MemberOutcome, ApiError>> + Send + 'static,
    {
        let (request, target) = (self.request, self.target);
        self.idempotent
            .run_member(status, move |app, ctx| work(app, ctx, target, request))
            .await
    }
}

impl<T: MemberRequest> Write<MemberPath, T> {
    /// Runs the member command under the request's `Idempotency-Key`.
    pub async fn execute(self) -> Result<Response, ApiError> {
        self.run_member(StatusCode::OK, |app, ctx, member, request| async move {
            Ok(request.execute(app.commands(), &ctx, &member).await?)
        })
        .await
    }
}
