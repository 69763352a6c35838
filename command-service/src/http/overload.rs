//! Admission of API requests: a request beyond the process's bound on work in flight is
//! answered 503 `overloaded` with `Retry-After` at once (`common::overload`). Health, readiness
//! and metrics are not behind it, so an overloaded process still reports itself alive.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use crate::http::error::ApiError;
use crate::http::AppState;

/// Runs the request if there is room for it, else sheds it.
pub async fn admit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match state.in_flight().try_admit() {
        Some(_admitted) => next.run(request).await,
        None => ApiError::Overloaded.into_response(),
    }
}
