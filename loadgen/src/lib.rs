//! POS load generator and benchmark driver for the loyalty platform.
//!
//! It talks to a running platform only through its public contracts (SPEC §8): the JSON
//! command API as POS terminals do, GraphQL as storefront widgets do. It sets up its own orgs,
//! programs, locations and API keys (keys through `common::keys`, the library behind
//! `command-service keys create`, so it needs the database URL), so one command runs it:
//!
//! ```text
//! loadgen run --concurrency 32 --duration 30          # closed loop, mixed POS traffic
//! loadgen run --rate 1000 --duration 60 --mix purchase=1   # open loop, purchases only
//! loadgen history --events 10000 --samples 300          # long-history member vs new member
//! loadgen graphql --query member --connections 32       # storefront query throughput
//! ```
//!
//! Subcommands:
//! - [`run`](run_workload): a realistic mix (enrolments, purchases, refunds, redemptions,
//!   retries with the same `Idempotency-Key`), closed-loop at a concurrency or open-loop at a
//!   rate, then commands/s, latency p50/p99/p99.9, errors by kind, projection lag and a
//!   consistency check ([`check`]).
//! - [`history`](run_history): command latency on a member with a long history vs a new one.
//! - [`graphql`](run_graphql): QPS and latency of a GraphQL query at a number of connections.
//! - [`seed`](seed::run_seed): a large log written straight into the event store, for the audit
//!   replay benchmark.
//!
//! Only loopback targets are accepted, and every run is bounded in time and requests.
//!
//! Layout: [`cli`] parses the command line into one subcommand, each in its module with its
//! arguments and report ([`run`], [`history`], [`graphql`], [`seed`]); [`target`] holds the
//! options they share. [`setup`] creates orgs, keys and members through the typed command-API
//! client (`loyalty-client`), with the active set of [`promotions`] and their basket lines; [`api`] adds GraphQL and the loopback rule. `run` sends the
//! [`mix`] from [`workload`] (knowing what [`state`] holds), scheduled by [`drive`], and measures with [`lag`], [`check`],
//! [`resources`] and [`stats`] into its [`report`].

// Rates, means and milliseconds in the reports are statistics, never money or points: floats
// are the right tool here.
#![allow(clippy::float_arithmetic)]

pub mod api;
pub mod check;
pub mod cli;
pub mod drive;
pub mod graphql;
pub mod history;
pub mod lag;
pub mod mix;
pub mod promotions;
pub mod report;
pub mod resources;
pub mod run;
pub mod seed;
pub mod setup;
pub mod state;
pub mod stats;
pub mod target;
pub mod workload;

pub use cli::{Cli, Command};
pub use graphql::{run_graphql, GraphqlArgs, GraphqlReport, QueryKind, MEMBER_QUERY, TYPENAME_QUERY};
pub use history::{run_history, HistoryArgs, HistoryReport};
pub use run::{run_workload, LagSourceKind, RunArgs};
pub use target::Target;

/// Longest run the load generator accepts, in seconds.
pub const MAX_DURATION_SECS: u64 = 3_600;
