//! `loadgen graphql`: QPS and latency of a GraphQL query at a number of connections, each
//! sending its next query when the previous one is answered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;
use serde_json::{json, Value};

use crate::api::graphql_error_kind;
use crate::setup;
use crate::stats::{self, rate, LatencySummary, Recorder};
use crate::target::Target;
use crate::MAX_DURATION_SECS;

/// The GraphQL queries `loadgen graphql` can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryKind {
    /// The storefront widget's member query: balance, tier progress, RFM, stamp cards.
    Member,
    /// The member query without `leaderboardRanks`, to tell the cost of the ranks apart.
    MemberWithoutRanks,
    /// `{ __typename }`: the cost of the HTTP + GraphQL stack alone.
    Typename,
}

impl QueryKind {
    fn asks_for_a_member(self) -> bool {
        matches!(self, QueryKind::Member | QueryKind::MemberWithoutRanks)
    }

    /// The query text and its name in reports.
    fn query(self) -> (String, &'static str) {
        match self {
            QueryKind::Member => (MEMBER_QUERY.to_owned(), "storefront member query"),
            QueryKind::MemberWithoutRanks => (
                MEMBER_QUERY.replace("    leaderboardRanks { period rank points }\n", ""),
                "storefront member query without leaderboardRanks",
            ),
            QueryKind::Typename => (TYPENAME_QUERY.to_owned(), "{ __typename }"),
        }
    }
}

/// What a storefront widget asks for a member (SPEC §7): balance, tier progress, stamp cards,
/// rewards they can afford, recent history, leaderboard ranks.
pub const MEMBER_QUERY: &str = "query StorefrontMember($orgId: ID!, $memberId: ID!) {
  member(orgId: $orgId, memberId: $memberId) {
    memberId externalId displayName
    balance { points lifetimeEarned redeemed expired clawedBack }
    tier { name multiplierBps qualifyingPoints nextTier pointsToNext }
    rfm { recencyDays frequency monetaryMinor r f m segment }
    stampCards { cardId name stamps stampsRequired cardsCompleted rewardsIssued }
    affordableRewards { rewardId name pointsCost }
    history(first: 5) { nodes { eventType occurredAt pointsDelta balanceAfter } }
    leaderboardRanks { period rank points }
  }
}";

pub const TYPENAME_QUERY: &str = "{ __typename }";

#[derive(Debug, Clone, Args)]
pub struct GraphqlArgs {
    #[command(flatten)]
    pub target: Target,
    #[arg(long, value_enum, default_value = "member")]
    pub query: QueryKind,
    /// Concurrent connections, each sending its next query when the previous is answered.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub connections: u64,
    /// Seconds, warm-up included.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=MAX_DURATION_SECS))]
    pub duration: u64,
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub warmup: u64,
    /// Members (each with a few purchases) the member query picks from.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub members: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GraphqlReport {
    pub query: String,
    pub connections: u64,
    pub measured_seconds: f64,
    pub queries_ok: u64,
    pub queries_per_second: f64,
    pub latency: LatencySummary,
    pub errors: std::collections::BTreeMap<String, u64>,
}

impl GraphqlReport {
    pub fn render(&self) -> String {
        format!(
            "== loadgen graphql: {} at {} connections ==\n{} ok in {:.1} s: {:.1} queries/s\nlatency: {}\nerrors: {:?}\n",
            self.query,
            self.connections,
            self.queries_ok,
            self.measured_seconds,
            self.queries_per_second,
            self.latency.line(),
            self.errors
        )
    }
}

/// `loadgen graphql`: closed-loop GraphQL queries at `--connections`.
pub async fn run_graphql(args: GraphqlArgs) -> anyhow::Result<GraphqlReport> {
    if args.warmup >= args.duration {
        bail!("--warmup must be shorter than --duration");
    }
    let api = args.target.api()?;
    let org = args
        .target
        .orgs(
            &api,
            1,
            crate::setup::OrgShape {
                locations: 2,
                promotions: 0,
            },
        )
        .await?
        .remove(0);
    let members = setup::enrol_members(&api, &org, 1, args.members, 16).await?;
    if args.query.asks_for_a_member() {
        eprintln!("loadgen: giving {} members some history", members.len());
        futures::future::try_join_all(members.chunks(16).map(|chunk| {
            let (api, org) = (&api, &org);
            async move {
                for member in chunk {
                    for amount in [1_250, 4_990, 780] {
                        setup::purchase(api, org, *member, amount)
                            .await
                            .map_err(|e| anyhow::anyhow!("purchase for {member}: {e}"))?;
                    }
                }
                Ok::<_, anyhow::Error>(())
            }
        }))
        .await?;
        // Wait until the read model knows the last member, so no query hits a missing member.
        let last = *members.last().context("no members")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let data = api
                .graphql(
                    &org.storefront_key,
                    "query($orgId: ID!, $memberId: ID!) { member(orgId: $orgId, memberId: $memberId) { memberId } }",
                    &json!({"orgId": org.id, "memberId": last}),
                )
                .await?;
            if !data["member"].is_null() {
                break;
            }
            if Instant::now() >= deadline {
                bail!("member {last} did not appear in the read model within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let (query, name) = args.query.query();
    let query = Arc::new(query);
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup);
    let end = start + Duration::from_secs(args.duration);
    let bar = args.target.progress(args.duration * 1000);
    let members = Arc::new(members);
    let workers = (0..args.connections).map(|i| {
        let (api, org, members, bar) = (api.clone(), org.clone(), members.clone(), bar.clone());
        let query = query.clone();
        tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(i);
            let mut recorder = Recorder::default();
            while Instant::now() < end {
                let member = members[rng.random_range(0..members.len())];
                let variables = match args.query {
                    QueryKind::Member | QueryKind::MemberWithoutRanks => {
                        json!({"orgId": org.id, "memberId": member})
                    }
                    QueryKind::Typename => Value::Null,
                };
                let t = Instant::now();
                let outcome = match api.graphql_raw(&org.storefront_key, &query, &variables).await {
                    Ok(reply) => match graphql_error_kind(&reply) {
                        None if args.query.asks_for_a_member()
                            && reply.body.pointer("/data/member").is_none_or(Value::is_null) =>
                        {
                            Err("member not found".to_owned())
                        }
                        None => Ok(()),
                        Some(kind) => Err(kind),
                    },
                    Err(error) => Err(loyalty_client::transport_kind(&error).to_owned()),
                };
                if t >= measure_from {
                    match outcome {
                        Ok(()) => recorder.ok("query", t.elapsed()),
                        Err(error) => recorder.error("query", error),
                    }
                }
                if i == 0 {
                    bar.set_position(u64::try_from(start.elapsed().as_millis()).unwrap_or(0));
                }
            }
            recorder
        })
    });
    let mut total = Recorder::default();
    for worker in futures::future::join_all(workers).await {
        let recorder = worker.context("a GraphQL worker panicked")?;
        total.all.merge(&recorder.all);
        for (kind, count) in recorder.errors {
            *total.errors.entry(kind).or_default() += count;
        }
    }
    bar.finish_and_clear();
    let measured = Instant::now().min(end).saturating_duration_since(measure_from);
    let report = GraphqlReport {
        query: name.to_owned(),
        connections: args.connections,
        measured_seconds: stats::round1(measured.as_secs_f64()),
        queries_ok: total.all.count(),
        queries_per_second: rate(total.all.count(), measured),
        latency: total.all.summary(),
        errors: total.errors,
    };
    args.target.write_json(&report)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_member_query_without_ranks_differs_only_by_the_ranks() {
        let (with, _) = QueryKind::Member.query();
        let (without, _) = QueryKind::MemberWithoutRanks.query();
        assert!(with.contains("leaderboardRanks"));
        assert!(!without.contains("leaderboardRanks"));
        assert_eq!(with.lines().count(), without.lines().count() + 1);
    }
}
