//! The process-wide Prometheus recorder.
//!
//! Code records with the `metrics` macros (`metrics::counter!`, `metrics::histogram!`, ...);
//! [`handle`] installs the recorder on first use and [`render`] is the `GET /metrics` handler.
//! Histograms whose name ends in `_seconds` get [`LATENCY_BUCKETS`] and are rendered as real
//! Prometheus histograms (others as summaries).

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Bucket upper bounds, in seconds, for every latency histogram (`*_seconds`).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram samples are drained even when nobody scrapes, bounding memory.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The handle of the global Prometheus recorder, installing the recorder on first call.
pub fn handle() -> PrometheusHandle {
    HANDLE.get_or_init(install).clone()
}

fn install() -> PrometheusHandle {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
        .expect("LATENCY_BUCKETS is not empty")
        .build_recorder();
    let handle = recorder.handle();
    if let Err(error) = metrics::set_global_recorder(recorder) {
        // Only possible if something outside this module installed a recorder first; metrics
        // then go there and /metrics shows an empty page rather than failing the service.
        tracing::warn!(%error, "a global metrics recorder was already installed");
    }
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            upkeep.run_upkeep();
        })
        .expect("spawning the metrics upkeep thread");
    handle
}

/// Axum handler for `GET /metrics`: the Prometheus text exposition of every metric.
pub async fn render() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        handle().render(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn recorded_metrics_are_rendered_with_latency_buckets() {
        let handle = super::handle();
        metrics::counter!("common_test_requests_total", "route" => "/x").increment(3);
        metrics::histogram!("common_test_latency_seconds").record(0.02);
        let text = handle.render();
        assert!(
            text.contains("common_test_requests_total{route=\"/x\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("common_test_latency_seconds_bucket{le=\"0.025\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("common_test_latency_seconds_bucket{le=\"0.01\"} 0"),
            "{text}"
        );
    }
}
