//! The consistency check at the end of a run, once the projections have caught up:
//!
//! - per org, the read model agrees with what the command API acknowledged: every member's
//!   balance as served by GraphQL equals the balance of its last acknowledgement, and
//!   Σ member balances = the org's points liability (SPEC §4 financial integrity);
//! - every journal entry of the ledger read model sums to zero (read from the database);
//! - `projector audit` (replay of the event store into fresh tables, compared with the live
//!   read models) reports no difference.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use futures::{stream, StreamExt as _};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::api::Api;
use crate::lag::balances_query;
use crate::setup::Org;

#[derive(Debug, Clone, Serialize)]
pub struct OrgCheck {
    pub org: String,
    pub members: usize,
    /// Σ balances of the last acknowledgements.
    pub sum_acknowledged: i64,
    /// Σ balances served by the read model.
    pub sum_read_model: i64,
    /// The org's points liability served by the read model.
    pub liability: i64,
    /// Members whose read-model balance differs from their last acknowledgement.
    pub mismatched_members: usize,
    /// Members the read model does not know.
    pub missing_members: usize,
}

impl OrgCheck {
    pub fn ok(&self) -> bool {
        self.sum_acknowledged == self.sum_read_model
            && self.sum_read_model == self.liability
            && self.mismatched_members == 0
            && self.missing_members == 0
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct JournalCheck {
    pub entries: i64,
    /// Entries whose postings do not sum to zero, or that do not have exactly two.
    pub unbalanced_entries: i64,
    /// Orgs whose `org_liability` differs from Σ `member_balances` in the database.
    pub orgs_with_liability_mismatch: i64,
}

impl JournalCheck {
    pub fn ok(&self) -> bool {
        self.unbalanced_entries == 0 && self.orgs_with_liability_mismatch == 0
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditCheck {
    pub command: String,
    pub exit_code: Option<i32>,
    pub seconds: f64,
    /// The last lines of its output.
    pub output_tail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConsistencyReport {
    pub orgs: Vec<OrgCheck>,
    pub journal: Option<Result<JournalCheck, String>>,
    pub audit: Option<Result<AuditCheck, String>>,
    pub ok: bool,
}

impl ConsistencyReport {
    pub fn render(&self) -> String {
        let mut out = format!("consistency check: {}\n", if self.ok { "OK" } else { "FAILED" });
        for org in &self.orgs {
            out.push_str(&format!(
                "  {:<24} {} members  Σ acknowledged {}  Σ read model {}  liability {}  mismatched {}  missing {}  {}\n",
                org.org,
                org.members,
                org.sum_acknowledged,
                org.sum_read_model,
                org.liability,
                org.mismatched_members,
                org.missing_members,
                if org.ok() { "ok" } else { "MISMATCH" }
            ));
        }
        match &self.journal {
            Some(Ok(journal)) => out.push_str(&format!(
                "  journal (database): {} entries of these orgs, {} not two postings summing to zero; {} orgs with liability != Σ balances\n",
                journal.entries, journal.unbalanced_entries, journal.orgs_with_liability_mismatch
            )),
            Some(Err(error)) => out.push_str(&format!("  journal: not checked: {error}\n")),
            None => out.push_str("  journal: not checked\n"),
        }
        match &self.audit {
            Some(Ok(audit)) => out.push_str(&format!(
                "  audit `{}`: exit {:?} after {:.1} s\n{}",
                audit.command,
                audit.exit_code,
                audit.seconds,
                indent(&audit.output_tail)
            )),
            Some(Err(error)) => out.push_str(&format!("  audit: failed to run: {error}\n")),
            None => out.push_str("  audit: not run (no --audit-cmd)\n"),
        }
        out
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    | {l}\n")).collect()
}

/// Checks one org: member balances in the read model against the acknowledged ones, and their
/// sum against the liability.
pub async fn check_org(api: &Api, org: &Org, members: &[(Uuid, i64)]) -> anyhow::Result<OrgCheck> {
    let liability = api
        .graphql(
            &org.analyst_key,
            "query($org: ID!) { liability(orgId: $org) { points } }",
            &json!({ "org": org.id }),
        )
        .await
        .with_context(|| format!("reading the liability of {}", org.id))?
        .pointer("/liability/points")
        .and_then(Value::as_i64)
        .with_context(|| format!("no liability.points for {}", org.id))?;

    let batches: Vec<&[(Uuid, i64)]> = members.chunks(50).collect();
    let results: Vec<anyhow::Result<Vec<Option<i64>>>> = stream::iter(batches)
        .map(|batch| async move {
            let ids: Vec<Uuid> = batch.iter().map(|(id, _)| *id).collect();
            let data = api
                .graphql(&org.storefront_key, &balances_query(&org.id, &ids), &Value::Null)
                .await?;
            Ok((0..ids.len())
                .map(|i| {
                    data.get(format!("m{i}"))
                        .and_then(|m| m.pointer("/balance/points"))
                        .and_then(Value::as_i64)
                })
                .collect())
        })
        .buffered(4)
        .collect()
        .await;
    let mut check = OrgCheck {
        org: org.id.clone(),
        members: members.len(),
        sum_acknowledged: members.iter().map(|(_, b)| b).sum(),
        sum_read_model: 0,
        liability,
        mismatched_members: 0,
        missing_members: 0,
    };
    for (batch, shown) in members.chunks(50).zip(results) {
        for ((_, acknowledged), shown) in batch.iter().zip(shown?) {
            match shown {
                Some(points) => {
                    check.sum_read_model += points;
                    if points != *acknowledged {
                        check.mismatched_members += 1;
                    }
                }
                None => check.missing_members += 1,
            }
        }
    }
    Ok(check)
}

/// Checks the ledger read model of `orgs` in the database: every journal entry has exactly two
/// postings summing to zero, and the org's liability equals Σ of its members' balances there.
pub async fn check_journal(pool: &PgPool, schema: &str, orgs: &[String]) -> anyhow::Result<JournalCheck> {
    if !schema
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        bail!("--read-model-schema `{schema}` is not a plain lowercase identifier");
    }
    let (entries, unbalanced): (i64, i64) = sqlx::query_as(&format!(
        "SELECT count(*), count(*) FILTER (WHERE total <> 0 OR legs <> 2) FROM ( \
           SELECT coalesce(sum(p.delta), 0) AS total, count(p.delta) AS legs \
           FROM {schema}.journal_entries j \
           LEFT JOIN {schema}.postings p USING (org_id, member_id, sequence) \
           WHERE j.org_id = ANY($1) \
           GROUP BY j.org_id, j.member_id, j.sequence) e"
    ))
    .bind(orgs)
    .fetch_one(pool)
    .await
    .context("summing the postings of each journal entry")?;
    let liability_mismatches: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM unnest($1::text[]) AS o(org_id) \
         LEFT JOIN {schema}.org_liability l USING (org_id) \
         LEFT JOIN (SELECT org_id, sum(balance)::bigint AS balances FROM {schema}.member_balances \
                    WHERE org_id = ANY($1) GROUP BY org_id) b USING (org_id) \
         WHERE coalesce(l.points, 0) <> coalesce(b.balances, 0)"
    ))
    .bind(orgs)
    .fetch_one(pool)
    .await
    .context("comparing liabilities with member balances")?;
    Ok(JournalCheck {
        entries,
        unbalanced_entries: unbalanced,
        orgs_with_liability_mismatch: liability_mismatches,
    })
}

/// Runs the audit command (e.g. `target/release/projector audit`) with the environment of the
/// load generator; a non-zero exit means the audit found differences or failed.
pub async fn run_audit(command: &str, timeout: Duration) -> anyhow::Result<AuditCheck> {
    let mut words = command.split_whitespace();
    let Some(program) = words.next() else {
        bail!("--audit-cmd is empty");
    };
    let started = std::time::Instant::now();
    let child = tokio::process::Command::new(program)
        .args(words)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting `{command}`"))?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .with_context(|| format!("`{command}` did not finish within {timeout:?}"))?
        .with_context(|| format!("waiting for `{command}`"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    Ok(AuditCheck {
        command: command.to_owned(),
        exit_code: output.status.code(),
        seconds: (started.elapsed().as_millis() as f64 / 100.0).round() / 10.0,
        output_tail: tail,
    })
}
