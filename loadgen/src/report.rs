//! The report of `loadgen run`, printed and optionally written as JSON: what was measured
//! (`stats`), the projection lag, the resources and the consistency check, each rendered by its
//! own module.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::check::ConsistencyReport;
use crate::lag::LagReport;
use crate::resources::ResourceReport;
use crate::stats::LatencySummary;

/// The result of `loadgen run`, printed and optionally written as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub mode: String,
    pub orgs: usize,
    pub members_at_start: usize,
    pub measured_seconds: f64,
    pub commands_ok: u64,
    pub commands_per_second: f64,
    pub errors_total: u64,
    pub latency: LatencySummary,
    pub by_kind: BTreeMap<String, LatencySummary>,
    pub errors: BTreeMap<String, u64>,
    /// Requests refused at once because the platform was overloaded or a key over its rate
    /// (503 `overloaded`, 429 `rate_limited`): not errors, counted here and not in `errors`.
    pub shed_total: u64,
    pub shed: BTreeMap<String, u64>,
    /// How long a shed request waited for its refusal.
    pub shed_latency: LatencySummary,
    pub lag: Option<LagReport>,
    pub resources: Option<ResourceReport>,
    pub consistency: Option<ConsistencyReport>,
}

impl RunReport {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "== loadgen run: {} ==", self.mode);
        let _ = writeln!(
            out,
            "orgs {}, members at start {}, measured {:.1} s",
            self.orgs, self.members_at_start, self.measured_seconds
        );
        let _ = writeln!(
            out,
            "commands ok: {}  ({:.1}/s)   errors: {}",
            self.commands_ok, self.commands_per_second, self.errors_total
        );
        let _ = writeln!(out, "latency (all ok):  {}", self.latency.line());
        for (kind, summary) in &self.by_kind {
            let _ = writeln!(out, "  {kind:<9} {}", summary.line());
        }
        if self.shed_total > 0 {
            let _ = writeln!(
                out,
                "shed (refused at once, to retry later): {}   answered in {}",
                self.shed_total,
                self.shed_latency.line()
            );
            for (kind, count) in &self.shed {
                let _ = writeln!(out, "  {count:>8}  {kind}");
            }
        }
        if self.errors.is_empty() {
            let _ = writeln!(out, "errors by kind: none");
        } else {
            let _ = writeln!(out, "errors by kind:");
            for (kind, count) in &self.errors {
                let _ = writeln!(out, "  {count:>8}  {kind}");
            }
        }
        match &self.lag {
            Some(lag) => out.push_str(&lag.render()),
            None => out.push_str("projection lag: not measured\n"),
        }
        if let Some(resources) = &self.resources {
            out.push_str(&resources.render());
        }
        match &self.consistency {
            Some(check) => out.push_str(&check.render()),
            None => out.push_str("consistency check: skipped\n"),
        }
        out
    }
}
