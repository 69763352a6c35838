//! The browser side of the query service: the embeddable storefront widget (`/widget.js`,
//! SPEC §10), its demo page (`/widget-demo`, only with `--widget-demo`) and the analyst
//! dashboard (`/dashboard`). Every file is embedded in the binary ([`assets`]).
//!
//! Pages carry a Content-Security-Policy that allows scripts, styles and connections from this
//! origin only: even a string that slipped into the page as markup could not run a script or
//! send data elsewhere. (Styles also allow inline ones: ECharts positions its tooltips with
//! `style` attributes.) `widget.js` itself runs inside the shop's page, under the shop's policy.

pub mod assets;
mod demo;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use self::assets::Asset;

/// The policy of the pages this service serves.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// The routes of the widget, its demo page (only with `demo` tokens) and the dashboard.
pub fn router(demo: Option<crate::storefront::DemoTokens>) -> Router {
    Router::new()
        .route(
            "/widget.js",
            get(|headers: HeaderMap| async move { serve(&assets::WIDGET_JS, &headers) }),
        )
        .route(
            "/dashboard",
            get(|headers: HeaderMap| async move { page(&assets::DASHBOARD_HTML, &headers) }),
        )
        .route("/dashboard/{file}", get(dashboard_file))
        .route(
            "/vendor/echarts.min.js",
            get(|headers: HeaderMap| async move { serve(&assets::ECHARTS_JS, &headers) }),
        )
        .merge(demo::router(demo))
}

async fn dashboard_file(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match assets::DASHBOARD_FILES.iter().find(|(name, _)| *name == file) {
        Some((_, asset)) => serve(asset, &headers),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// An HTML page: the asset with the page policy.
pub(crate) fn page(asset: &'static Asset, headers: &HeaderMap) -> Response {
    let mut response = serve(asset, headers);
    let response_headers = response.headers_mut();
    response_headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    response_headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response_headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// An embedded file, or 304 when the browser's copy is current. Browsers revalidate every
/// time (`no-cache`), so a new release is picked up at once and an unchanged file costs a 304.
pub(crate) fn serve(asset: &'static Asset, headers: &HeaderMap) -> Response {
    let etag = asset.etag();
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag));
    let common = [
        (header::ETAG, etag.to_owned()),
        (header::CACHE_CONTROL, "no-cache".to_owned()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (common, [(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
}
