//! The layers around every route: request ids, the request span, an optional timeout, and the
//! Prometheus metrics of the routes.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::http::error::ApiError;

/// The header carrying the request id, both ways.
const X_REQUEST_ID: &str = "x-request-id";

/// Gives every request an id (the caller's `x-request-id` if fit, else a new UUID) that its
/// response echoes, a tracing span carrying it, and, with `timeout`, an answer in time.
pub fn around(router: Router, timeout: Option<Duration>) -> Router {
    let router = match timeout {
        // A write keeps running in its own task after the timeout (see `write`); a retry with
        // its key gets its answer.
        Some(timeout) => router
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                timeout,
            ))
            .layer(middleware::map_response(timeout_as_api_error)),
        None => router,
    };
    router
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(|response: &Response, latency: Duration, span: &Span| {
                    let status = response.status().as_u16();
                    span.record("status", status);
                    tracing::debug!(status, elapsed_ms = latency.as_millis() as u64, "request done");
                })
                // Failures are logged where they become a response (`ApiError`).
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::map_request(drop_unfit_request_id))
}

/// The timeout layer answers with an empty body; every error of the API has a JSON one.
async fn timeout_as_api_error(response: Response) -> Response {
    let from_timeout = response.status() == StatusCode::SERVICE_UNAVAILABLE
        && !response.headers().contains_key(header::CONTENT_TYPE);
    if from_timeout {
        ApiError::Timeout.into_response()
    } else {
        response
    }
}

/// A caller's `x-request-id` is kept if it is 1 to 128 visible ASCII characters; any other is
/// dropped, so that a new id replaces it.
async fn drop_unfit_request_id(mut request: Request) -> Request {
    let fit = request
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()));
    if !fit {
        request.headers_mut().remove(X_REQUEST_ID);
    }
    request
}

/// The span of a request, carrying its id; the caller's key id and the status are recorded in
/// it later.
fn request_span(request: &Request) -> Span {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
        key_id = tracing::field::Empty,
        status = tracing::field::Empty,
    )
}

/// Requests by route and status, and their latency by route (matched routes only, so that
/// random URLs cannot blow up the label set).
pub async fn record_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(
        "command_http_requests_total",
        "method" => method.clone(),
        "route" => route.clone(),
        "status" => status
    )
    .increment(1);
    metrics::histogram!("command_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::HeaderValue;
    use axum::routing::get;
    use tower::ServiceExt as _;
    use uuid::Uuid;

    use super::*;

    fn app(timeout: Option<Duration>) -> Router {
        let routes = Router::new().route("/", get(|| async { "ok" })).route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
        around(routes, timeout)
    }

    async fn echoed_id(sent: Option<HeaderValue>) -> String {
        let mut request = Request::get("/").body(Body::empty()).unwrap();
        if let Some(sent) = sent {
            request.headers_mut().insert(X_REQUEST_ID, sent);
        }
        let response = app(None).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.headers()[X_REQUEST_ID].to_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn a_fit_request_id_is_echoed_and_any_other_replaced() {
        assert_eq!(
            echoed_id(Some(HeaderValue::from_static("pos-7:abc"))).await,
            "pos-7:abc"
        );
        let unfit = [
            HeaderValue::from_static(""),
            HeaderValue::from_static("has space"),
            HeaderValue::from_str(&"x".repeat(129)).unwrap(),
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        ];
        for sent in unfit.into_iter().map(Some).chain([None]) {
            let echoed = echoed_id(sent.clone()).await;
            assert!(Uuid::parse_str(&echoed).is_ok(), "{sent:?} -> {echoed}");
        }
    }

    #[tokio::test]
    async fn a_request_past_the_timeout_gets_the_error_body() {
        let request = Request::get("/slow").body(Body::empty()).unwrap();
        let response = app(Some(Duration::from_millis(50)))
            .oneshot(request)
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(X_REQUEST_ID));
        let body = axum::body::to_bytes(response.into_body(), 10_000).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "timeout");
    }
}
