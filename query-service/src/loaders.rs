//! DataLoaders for every edge from a member (or an org) to a read model.
//!
//! Resolving a field of many members at once queues one key per member; the loader runs one
//! statement for the whole batch. Batching by time window alone is not a guarantee (a big page
//! may take longer to walk than the window), so list fields also [`prefetch`] what their
//! selection needs for the whole page up front, one statement per read model: a page of 100
//! members with balance, tier, RFM and stamp cards costs the same handful of statements as a
//! page of one.
//!
//! Each HTTP request gets its own loaders with a cache ([`for_request`]): nothing outlives the
//! request, so no answer shows data older than its request. Subscriptions use a schema-wide
//! instance with the cache off ([`uncached`]), since a connection lives long.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use async_graphql::{Lookahead, Value};
use domain::ids::MemberKey;

use crate::db::{
    BalanceRow, Db, FullProgram, LeaderboardRow, MemberAchievementRow, MemberRow, PeriodKeys,
    PromotionHistoryRow, RfmRow, StampCardRow, TierChangeRow, TierRow, TransitionRow,
};
use crate::error::{QueryError, QueryResult};

/// The loaders of all read models.
pub type Loaders = DataLoader<ReadModels, HashMapCache>;

/// Loaders for one request, caching what they load for its duration.
pub fn for_request(db: Db) -> Loaders {
    DataLoader::with_cache(ReadModels { db }, tokio::spawn, HashMapCache::default())
}

/// Loaders that never cache, for long-lived connections.
pub fn uncached(db: Db) -> Loaders {
    let loaders = for_request(db);
    loaders.enable_all_cache(false);
    loaders
}

/// The batch loader behind [`Loaders`]; one `Loader` impl per key type below.
pub struct ReadModels {
    db: Db,
}

/// Keys: which read model of which member.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DirectoryOf(pub MemberKey);
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BalanceOf(pub MemberKey);
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TierOf(pub MemberKey);
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RfmOf(pub MemberKey);
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StampCardsOf(pub MemberKey);
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TierHistoryOf(pub MemberKey);
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransitionsOf(pub MemberKey);
/// A member's current ranks on the boards of a location (`""`: org-wide).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RanksOf(pub MemberKey, pub String);
/// An org's program.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProgramOf(pub String);
/// A member's last purchase and promotion uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PromotionHistoryOf(pub MemberKey);
/// A member's progress and unlocks per achievement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AchievementsOf(pub MemberKey);
/// What is left of each budgeted promotion's budget of an org.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BudgetsOf(pub String);

fn rekey<K: Eq + Hash, V>(values: HashMap<MemberKey, V>, wrap: impl Fn(MemberKey) -> K) -> HashMap<K, V> {
    values
        .into_iter()
        .map(|(key, value)| (wrap(key), value))
        .collect()
}

fn member_keys<'a>(keys: impl IntoIterator<Item = &'a MemberKey>) -> Vec<MemberKey> {
    keys.into_iter().cloned().collect()
}

macro_rules! member_loader {
    ($key:ident, $value:ty, $method:ident) => {
        impl Loader<$key> for ReadModels {
            type Value = $value;
            type Error = QueryError;

            async fn load(&self, keys: &[$key]) -> Result<HashMap<$key, $value>, QueryError> {
                let members = member_keys(keys.iter().map(|key| &key.0));
                Ok(rekey(self.db.$method(&members).await?, $key))
            }
        }
    };
}

member_loader!(DirectoryOf, MemberRow, members);
member_loader!(BalanceOf, BalanceRow, balances);
member_loader!(TierOf, TierRow, tiers);
member_loader!(RfmOf, RfmRow, rfm);
member_loader!(StampCardsOf, Vec<StampCardRow>, stamp_cards);
member_loader!(TierHistoryOf, Vec<TierChangeRow>, tier_history);
member_loader!(TransitionsOf, Vec<TransitionRow>, member_transitions);
member_loader!(PromotionHistoryOf, PromotionHistoryRow, promotion_histories);
member_loader!(AchievementsOf, Vec<MemberAchievementRow>, member_achievements);

impl Loader<RanksOf> for ReadModels {
    type Value = Vec<LeaderboardRow>;
    type Error = QueryError;

    async fn load(&self, keys: &[RanksOf]) -> Result<HashMap<RanksOf, Vec<LeaderboardRow>>, QueryError> {
        let periods = PeriodKeys::at(chrono::Utc::now());
        // Usually one location per batch (the same field of every member of a page).
        let mut by_location: HashMap<&str, Vec<MemberKey>> = HashMap::new();
        for RanksOf(member, location) in keys {
            by_location.entry(location).or_default().push(member.clone());
        }
        let mut ranks = HashMap::new();
        for (location, members) in by_location {
            let found = self.db.ranks(&members, location, &periods).await?;
            ranks.extend(rekey(found, |member| RanksOf(member, location.to_owned())));
        }
        Ok(ranks)
    }
}

impl Loader<ProgramOf> for ReadModels {
    type Value = FullProgram;
    type Error = QueryError;

    async fn load(&self, keys: &[ProgramOf]) -> Result<HashMap<ProgramOf, FullProgram>, QueryError> {
        let orgs: Vec<String> = keys.iter().map(|key| key.0.clone()).collect();
        let programs = self.db.programs(&orgs).await?;
        Ok(programs
            .into_iter()
            .map(|(org, program)| (ProgramOf(org), program))
            .collect())
    }
}

impl Loader<BudgetsOf> for ReadModels {
    type Value = BTreeMap<String, i64>;
    type Error = QueryError;

    async fn load(
        &self,
        keys: &[BudgetsOf],
    ) -> Result<HashMap<BudgetsOf, BTreeMap<String, i64>>, QueryError> {
        let orgs: Vec<String> = keys.iter().map(|key| key.0.clone()).collect();
        let budgets = self.db.budgets_left(&orgs).await?;
        Ok(budgets
            .into_iter()
            .map(|(org, left)| (BudgetsOf(org), left))
            .collect())
    }
}

/// Loads, for every member of `keys` at once, each read model that `member` (the selection of
/// a `Member` in a list) asks for, so that resolving the list's items hits the cache only.
///
/// A member's `segmentHistory { member { ... } }` names the same member again: that nested
/// selection is prefetched the same way, so the whole tree costs one statement per read model
/// and level.
pub fn prefetch<'a>(
    loaders: &'a Loaders,
    member: &'a Lookahead<'a>,
    keys: &'a [MemberKey],
) -> futures::future::BoxFuture<'a, QueryResult<()>> {
    Box::pin(prefetch_level(loaders, member, keys))
}

async fn prefetch_level(loaders: &Loaders, member: &Lookahead<'_>, keys: &[MemberKey]) -> QueryResult<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let wants = |field: &str| member.field(field).exists();
    let mut orgs: Vec<String> = keys.iter().map(|key| key.org_id.clone()).collect();
    orgs.sort();
    orgs.dedup();
    // One set of keys per location the selection names (usually just the org-wide board).
    let mut locations: Vec<String> = member
        .field("leaderboardRanks")
        .selection_fields()
        .iter()
        .map(|field| {
            let arguments = field.arguments().unwrap_or_default();
            match arguments.iter().find(|(name, _)| name.as_str() == "locationId") {
                Some((_, Value::String(location))) => location.clone(),
                _ => String::new(),
            }
        })
        .collect();
    locations.sort();
    locations.dedup();

    let balance = async {
        if wants("balance") || wants("affordableRewards") {
            loaders.load_many(each(keys, BalanceOf)).await?;
        }
        Ok::<_, QueryError>(())
    };
    let tier = async {
        if wants("tier") {
            loaders.load_many(each(keys, TierOf)).await?;
        }
        Ok(())
    };
    let rfm = async {
        if wants("rfm") {
            loaders.load_many(each(keys, RfmOf)).await?;
        }
        Ok(())
    };
    let cards = async {
        if wants("stampCards") {
            loaders.load_many(each(keys, StampCardsOf)).await?;
        }
        Ok(())
    };
    let tier_history = async {
        if wants("tierHistory") {
            loaders.load_many(each(keys, TierHistoryOf)).await?;
        }
        Ok(())
    };
    let transitions = async {
        if wants("segmentHistory") {
            loaders.load_many(each(keys, TransitionsOf)).await?;
            let nested = member.field("segmentHistory").field("member");
            if nested.exists() {
                loaders.load_many(each(keys, DirectoryOf)).await?;
                prefetch(loaders, &nested, keys).await?;
            }
        }
        Ok(())
    };
    let program = async {
        // The entry tier of members without a tier row comes from the program, too.
        if wants("affordableRewards") || wants("tier") || wants("activePromotions") {
            loaders.load_many(orgs.iter().cloned().map(ProgramOf)).await?;
        }
        Ok(())
    };
    let promotions = async {
        if wants("activePromotions") {
            futures::try_join!(
                loaders.load_many(each(keys, TierOf)),
                loaders.load_many(each(keys, PromotionHistoryOf)),
                loaders.load_many(orgs.iter().cloned().map(BudgetsOf)),
            )?;
        }
        Ok(())
    };
    let ranks = async {
        for location in &locations {
            let keys = keys.iter().map(|key| RanksOf(key.clone(), location.clone()));
            loaders.load_many(keys).await?;
        }
        Ok(())
    };
    futures::try_join!(
        balance,
        tier,
        rfm,
        cards,
        tier_history,
        transitions,
        program,
        promotions,
        ranks
    )?;
    Ok(())
}

fn each<K>(keys: &[MemberKey], wrap: fn(MemberKey) -> K) -> Vec<K> {
    keys.iter().cloned().map(wrap).collect()
}
