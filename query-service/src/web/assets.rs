//! The browser files the query service serves, embedded in the binary at compile time so that
//! nothing is fetched from anywhere at run time (the sources live in `query-service/assets/`;
//! ECharts is vendored there from npm, see `scripts/web.sh`).

use std::sync::OnceLock;

use sha2::{Digest as _, Sha256};

/// One embedded file.
pub struct Asset {
    pub body: &'static str,
    pub content_type: &'static str,
    etag: OnceLock<String>,
}

impl Asset {
    const fn new(body: &'static str, content_type: &'static str) -> Self {
        Self {
            body,
            content_type,
            etag: OnceLock::new(),
        }
    }

    /// A strong validator of the body, so browsers revalidate instead of downloading again.
    pub fn etag(&self) -> &str {
        self.etag.get_or_init(|| {
            let digest = Sha256::digest(self.body.as_bytes());
            let hex: String = digest[..12].iter().map(|byte| format!("{byte:02x}")).collect();
            format!("\"{hex}\"")
        })
    }
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// `/widget.js`: the widget's sources in one classic script, wrapped in a function so that
/// none of its names lands in the host page's global scope.
pub static WIDGET_JS: Asset = Asset::new(
    concat!(
        "/* loyalty-widget: see /widget-demo */\n(() => {\n\"use strict\";\n",
        include_str!("../../assets/widget/graphql.js"),
        include_str!("../../assets/common/dom.js"),
        include_str!("../../assets/widget/styles.js"),
        include_str!("../../assets/widget/view.js"),
        include_str!("../../assets/widget/queries.js"),
        include_str!("../../assets/widget/element.js"),
        "})();\n"
    ),
    JS,
);

pub static WIDGET_DEMO_HTML: Asset = Asset::new(include_str!("../../assets/widget-demo/index.html"), HTML);
pub static WIDGET_DEMO_JS: Asset = Asset::new(include_str!("../../assets/widget-demo/demo.js"), JS);
pub static WIDGET_DEMO_CSS: Asset = Asset::new(include_str!("../../assets/widget-demo/demo.css"), CSS);

pub static DASHBOARD_HTML: Asset = Asset::new(include_str!("../../assets/dashboard/index.html"), HTML);

/// `(name, asset)` of `query-service/assets/dashboard/<name>`.
macro_rules! dashboard_file {
    ($name:literal, $content_type:expr) => {
        (
            $name,
            Asset::new(
                include_str!(concat!("../../assets/dashboard/", $name)),
                $content_type,
            ),
        )
    };
}

/// The dashboard's modules and style sheet, by their path under `/dashboard/`.
pub static DASHBOARD_FILES: [(&str, Asset); 10] = [
    dashboard_file!("style.css", CSS),
    dashboard_file!("main.js", JS),
    dashboard_file!("api.js", JS),
    dashboard_file!("charts.js", JS),
    dashboard_file!("panels.js", JS),
    dashboard_file!("segments.js", JS),
    dashboard_file!("points.js", JS),
    dashboard_file!("achievements.js", JS),
    dashboard_file!("members.js", JS),
    // The widget's DOM helpers, as a module.
    (
        "dom.js",
        Asset::new(
            concat!(
                include_str!("../../assets/common/dom.js"),
                "export { h, append, replace, formatPoints, formatDelta, formatDate, formatDateTime, \
                 formatMoney, progressBar };\n"
            ),
            JS,
        ),
    ),
];

/// Apache ECharts, the minified build its npm package ships (pinned by package-lock.json).
pub static ECHARTS_JS: Asset = Asset::new(include_str!("../../assets/vendor/echarts.min.js"), JS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_follow_the_content() {
        let a = Asset::new("a", JS);
        let b = Asset::new("b", JS);
        assert_eq!(a.etag(), Asset::new("a", CSS).etag());
        assert_ne!(a.etag(), b.etag());
        assert!(a.etag().starts_with('"') && a.etag().ends_with('"'));
    }

    #[test]
    fn the_widget_is_one_self_contained_script() {
        let body = WIDGET_JS.body;
        assert!(body.contains("customElements.define(\"loyalty-widget\""));
        // No module syntax: it must run as a classic <script>.
        assert!(!body
            .lines()
            .any(|line| line.starts_with("import ") || line.starts_with("export ")));
    }
}
