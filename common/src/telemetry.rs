//! Tracing setup shared by every binary and test.
//!
//! Filter from `RUST_LOG` (default [`DEFAULT_FILTER`]: `info`); `LOG_FORMAT=json` switches to
//! one JSON object per line. Logs go to stderr so that a command's own output on stdout (such as the key printed by
//! `command-service keys create`) stays clean.

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::EnvFilter;

/// The filter when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info,sqlx::postgres::notice=warn";

/// Installs the global tracing subscriber for `service_name`.
///
/// Idempotent: only the first call in a process installs anything, so tests may call it freely.
pub fn init(service_name: &str) {
    install(service_name, false);
}

/// Like [`init`], but logs through the test harness's capture, so a test's logs are shown only
/// when it fails.
pub fn init_for_tests() {
    install("tests", true);
}

fn install(service_name: &str, for_tests: bool) {
    let filter = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::builder()
            .with_default_directive(LevelFilter::INFO.into())
            .parse_lossy(directives),
        // Postgres notices ("relation already exists, skipping") are not news.
        _ => EnvFilter::new(DEFAULT_FILTER),
    };
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = match (json, for_tests) {
        (true, true) => builder
            .json()
            .with_current_span(true)
            .with_test_writer()
            .try_init(),
        (true, false) => builder
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .try_init(),
        (false, true) => builder.with_test_writer().try_init(),
        (false, false) => builder.with_writer(std::io::stderr).try_init(),
    };
    if installed.is_ok() {
        tracing::debug!(service = service_name, json, "telemetry initialised");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn init_twice_does_not_panic() {
        super::init_for_tests();
        super::init("test");
        tracing::info!("still logging");
    }
}
