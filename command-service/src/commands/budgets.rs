//! Promotion budgets on the command side (SPEC §9, migration 0006).
//!
//! A purchase is decided with what is left of each budgeted promotion's budget (only when the
//! program has budgeted promotions). The trigger on the events insert draws the points in the
//! same transaction as the purchase event and refuses the append (LY003) when the budget left
//! it was decided with is stale; the purchase is then decided again on a fresh read
//! ([`RetryPolicy::BUDGET`]).
//!
//! Draws on one budget are serialized by its row lock anyway, and purchases that race for it
//! lose to each other. So in each process, purchases of an org that draw on its budgets take
//! turns at the org's *budget gate*, and the gate keeps what is left of each budget as the last
//! purchase through it left it (the `budget_left` its event recorded): a purchase in turn reads
//! nothing and, unless another process drew meanwhile, does not lose. Whether a purchase will
//! draw is only known once it is decided, so a purchase takes its turn when the org's last
//! purchase drew (in a program whose budgeted promotion applies to most purchases, they all
//! take turns), or after it lost once; the others (a budget for big baskets only) go without
//! turns, read the budgets, and share the group commit. Whatever the gate holds is only a guess
//! that the trigger verifies: after a refusal, or an outcome that does not say what was drawn,
//! it is read again from `command_promotion_budgets`.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};

use anyhow::Context as _;
use domain::program::Promotion;
use domain::ProgramConfig;
use lru::LruCache;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::outcome::breakdown_of;
use super::{CommandError, Commands, MemberOutcome};

/// How many orgs keep a budget gate in memory (least recently used evicted; an evicted gate
/// still held by a purchase only means that two queues race, which is correct, only slower).
const GATES: NonZeroUsize = NonZeroUsize::new(1024).unwrap();

/// What is left of each budget of an org, as far as this process knows (promotion id →
/// points); held only by the purchase whose turn it is.
pub(super) type BudgetsLeft = BTreeMap<String, i64>;

/// The budget gate of one org.
#[derive(Default)]
pub(super) struct BudgetGate {
    /// The turn, with what is left of the org's budgets.
    turn: Arc<Mutex<BudgetsLeft>>,
    /// Whether the org's last purchase drew on a budget (or lost its draw).
    drawing: AtomicBool,
}

impl BudgetGate {
    /// Waits for the org's turn; the guard is the turn, with what is left of its budgets.
    pub(super) async fn turn(&self) -> OwnedMutexGuard<BudgetsLeft> {
        Arc::clone(&self.turn).lock_owned().await
    }

    /// Whether the org's last purchase drew on a budget (or lost its draw): the next one then
    /// takes its turn up front.
    pub(super) fn drawing(&self) -> bool {
        self.drawing.load(Ordering::Relaxed)
    }

    /// What a purchase's outcome tells the gate: whether it drew on a budget (or lost its
    /// draw), and, for the purchase in turn (`known`), what is left: the `budget_left` its
    /// event recorded for each budget it drew on. Any other outcome (refused by the trigger,
    /// nothing appended, not known) leaves nothing worth keeping: the next turn reads the
    /// budgets.
    pub(super) fn learn(
        &self,
        known: Option<&mut BudgetsLeft>,
        result: &Result<MemberOutcome, CommandError>,
    ) {
        let drew = match result {
            Ok(outcome) => outcome
                .events
                .iter()
                .any(|event| event.payload.draws_on_a_budget()),
            Err(error) => matches!(error, CommandError::BudgetContention),
        };
        self.drawing.store(drew, Ordering::Relaxed);
        let Some(known) = known else { return };
        let Some(breakdown) = result
            .as_ref()
            .ok()
            .and_then(|outcome| breakdown_of(&outcome.events))
        else {
            known.clear();
            return;
        };
        for promotion in breakdown.promotions {
            if let Some(left) = promotion.budget_left {
                known.insert(promotion.promotion_id, left);
            }
        }
    }
}

/// The budget gates of the orgs.
pub(super) struct BudgetGates(SyncMutex<LruCache<String, Arc<BudgetGate>>>);

impl Default for BudgetGates {
    fn default() -> Self {
        Self(SyncMutex::new(LruCache::new(GATES)))
    }
}

impl BudgetGates {
    /// The org's gate.
    pub(super) fn of(&self, org_id: &str) -> Arc<BudgetGate> {
        let mut gates = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        gates.get_or_insert(org_id.to_owned(), Arc::default).clone()
    }
}

impl Commands {
    /// What is left of the budget of each budgeted promotion of `config`: as `known` says, or
    /// read (and then known) if it misses one.
    pub(super) async fn budgets_left_known(
        &self,
        org_id: &str,
        config: &ProgramConfig,
        known: &mut BudgetsLeft,
    ) -> Result<BTreeMap<String, i64>, CommandError> {
        let cached: Option<BTreeMap<String, i64>> = config
            .budgeted_promotions()
            .map(|p| Some((p.promotion_id.clone(), *known.get(&p.promotion_id)?)))
            .collect();
        if let Some(left) = cached {
            return Ok(left);
        }
        let left = self.budgets_left(org_id, config).await?;
        known.clone_from(&left);
        Ok(left)
    }

    /// What is left of the budget of each budgeted promotion of `config` (none when it has no
    /// budgeted promotion, without asking the database).
    pub(super) async fn budgets_left(
        &self,
        org_id: &str,
        config: &ProgramConfig,
    ) -> Result<BTreeMap<String, i64>, CommandError> {
        let budgeted: Vec<&Promotion> = config.budgeted_promotions().collect();
        if budgeted.is_empty() {
            return Ok(BTreeMap::new());
        }
        let ids: Vec<String> = budgeted.iter().map(|p| p.promotion_id.clone()).collect();
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT promotion_id, greatest(budget_points - spent, 0) FROM command_promotion_budgets \
             WHERE org_id = $1 AND promotion_id = ANY($2)",
        )
        .bind(org_id)
        .bind(&ids)
        .fetch_all(&self.pool)
        .await
        .context("reading promotion budgets")?;
        let mut left: BTreeMap<String, i64> = rows.into_iter().collect();
        let missing: Vec<&Promotion> = budgeted
            .into_iter()
            .filter(|promotion| !left.contains_key(&promotion.promotion_id))
            .collect();
        if !missing.is_empty() {
            // Not normally reached: the ProgramConfigured trigger creates the rows. A budgeted
            // promotion without one has its whole budget left; its row is created here, or the
            // draw trigger would refuse every purchase that draws on it.
            self.create_budget_rows(org_id, &missing).await?;
            for promotion in missing {
                left.insert(
                    promotion.promotion_id.clone(),
                    promotion.budget_points.unwrap_or(0).max(0),
                );
            }
        }
        Ok(left)
    }

    async fn create_budget_rows(&self, org_id: &str, promotions: &[&Promotion]) -> anyhow::Result<()> {
        let ids: Vec<String> = promotions.iter().map(|p| p.promotion_id.clone()).collect();
        let budgets: Vec<i64> = promotions.iter().map(|p| p.budget_points.unwrap_or(0)).collect();
        tracing::warn!(org_id, promotions = ?ids, "creating missing promotion budget rows");
        sqlx::query(
            "INSERT INTO command_promotion_budgets (org_id, promotion_id, budget_points) \
             SELECT $1, id, budget FROM unnest($2::text[], $3::bigint[]) AS t(id, budget) \
             ON CONFLICT (org_id, promotion_id) DO NOTHING",
        )
        .bind(org_id)
        .bind(&ids)
        .bind(&budgets)
        .execute(&self.pool)
        .await
        .context("creating promotion budget rows")?;
        Ok(())
    }
}
