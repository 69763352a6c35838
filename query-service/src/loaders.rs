//! DataLoaders for every edge from a member (or an org) to a read model.
//!
//! Resolving a field of many members at once queues one key per member; the loader runs one
//! statement for the whole batch. Batching by time window alone is not a guarantee (a big page
//! may take longer to walk than the window), so list fields and the `member` field
//! [`prefetch`] what their selection needs up front, every read model in one statement
//! ([`Db::read_models`]): a page of 100 members with balance, tier, RFM and stamp cards costs
//! the same statement as a page of one, and a storefront's member card one statement (plus
//! its history, read from the event store).
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
    PromotionHistoryRow, ReadModelRows, RfmRow, StampCardRow, TierChangeRow, TierRow, TransitionRow, Wanted,
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

/// A loader whose value says whether the member has a row: a member without one is cached as
/// such, so a prefetched request does not ask again (many members have no RFM row yet).
macro_rules! optional_member_loader {
    ($key:ident, $value:ty, $method:ident) => {
        impl Loader<$key> for ReadModels {
            type Value = Option<$value>;
            type Error = QueryError;

            async fn load(&self, keys: &[$key]) -> Result<HashMap<$key, Option<$value>>, QueryError> {
                let members = member_keys(keys.iter().map(|key| &key.0));
                let mut found = self.db.$method(&members).await?;
                Ok(keys
                    .iter()
                    .map(|key| (key.clone(), found.remove(&key.0)))
                    .collect())
            }
        }
    };
}

member_loader!(DirectoryOf, MemberRow, members);
member_loader!(BalanceOf, BalanceRow, balances);
optional_member_loader!(TierOf, TierRow, tiers);
optional_member_loader!(RfmOf, RfmRow, rfm);
member_loader!(StampCardsOf, Vec<StampCardRow>, stamp_cards);
member_loader!(TierHistoryOf, Vec<TierChangeRow>, tier_history);
member_loader!(TransitionsOf, Vec<TransitionRow>, member_transitions);
member_loader!(PromotionHistoryOf, PromotionHistoryRow, promotion_histories);
member_loader!(AchievementsOf, Vec<MemberAchievementRow>, member_achievements);

impl Loader<RanksOf> for ReadModels {
    type Value = Vec<LeaderboardRow>;
    type Error = QueryError;

    async fn load(&self, keys: &[RanksOf]) -> Result<HashMap<RanksOf, Vec<LeaderboardRow>>, QueryError> {
        let members = member_keys(keys.iter().map(|key| &key.0));
        let mut locations: Vec<String> = keys.iter().map(|key| key.1.clone()).collect();
        locations.sort();
        locations.dedup();
        let mut found = self
            .db
            .ranks(&members, &locations, &PeriodKeys::at(chrono::Utc::now()))
            .await?;
        // Every key answered, with no ranks when the member has no points on those boards.
        Ok(keys
            .iter()
            .map(|key| {
                let ranks = found.remove(&(key.0.clone(), key.1.clone())).unwrap_or_default();
                (key.clone(), ranks)
            })
            .collect())
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
/// selection is read in the same statement.
pub async fn prefetch(loaders: &Loaders, member: &Lookahead<'_>, keys: &[MemberKey]) -> QueryResult<()> {
    let mut wanted = Wanted::default();
    wants(member, &mut wanted);
    prefetch_wanted(loaders, keys, wanted).await?;
    Ok(())
}

/// [`prefetch`] for members whose directory rows are not loaded yet: those too, returned (a
/// member absent from them does not exist, and the directory loader need not ask again).
pub async fn prefetch_members(
    loaders: &Loaders,
    member: &Lookahead<'_>,
    keys: &[MemberKey],
) -> QueryResult<HashMap<MemberKey, MemberRow>> {
    let mut wanted = Wanted {
        directory: true,
        ..Wanted::default()
    };
    wants(member, &mut wanted);
    prefetch_wanted(loaders, keys, wanted).await
}

/// Adds what the selection `member` of a `Member` reads to `wanted`.
fn wants(member: &Lookahead<'_>, wanted: &mut Wanted) {
    let has = |field: &str| member.field(field).exists();
    wanted.balances |= has("balance") || has("affordableRewards");
    wanted.tiers |= has("tier") || has("activePromotions");
    wanted.rfm |= has("rfm");
    wanted.stamp_cards |= has("stampCards");
    wanted.tier_history |= has("tierHistory");
    wanted.achievements |= has("badges") || has("achievements");
    // The entry tier of members without a tier row comes from the program, too.
    wanted.programs |=
        has("affordableRewards") || has("tier") || has("activePromotions") || has("achievements");
    wanted.promotion_histories |= has("activePromotions");
    wanted.budgets |= has("activePromotions");
    // One set of ranks per location the selection names (usually just the org-wide boards).
    for field in member.field("leaderboardRanks").selection_fields() {
        let arguments = field.arguments().unwrap_or_default();
        let location = match arguments.iter().find(|(name, _)| name.as_str() == "locationId") {
            Some((_, Value::String(location))) => location.clone(),
            _ => String::new(),
        };
        if !wanted.rank_locations.contains(&location) {
            wanted.rank_locations.push(location);
        }
    }
    if has("segmentHistory") {
        wanted.transitions = true;
        let nested = member.field("segmentHistory").field("member");
        if nested.exists() {
            wanted.directory = true;
            wants(&nested, wanted);
        }
    }
}

/// Reads and feeds what `wanted` names; returns the directory rows read.
async fn prefetch_wanted(
    loaders: &Loaders,
    keys: &[MemberKey],
    wanted: Wanted,
) -> QueryResult<HashMap<MemberKey, MemberRow>> {
    let periods = PeriodKeys::at(chrono::Utc::now());
    let rows = loaders.loader().db.read_models(keys, &wanted, &periods).await?;
    let directory = rows.directory.clone();
    feed(loaders, keys, &wanted, rows).await;
    Ok(directory)
}

/// Puts what [`Db::read_models`] read into the loaders' cache: for every key of a wanted read
/// model, its rows (none, for a list or an optional row, when it has none), so that the fields
/// resolved next find them there.
async fn feed(loaders: &Loaders, keys: &[MemberKey], wanted: &Wanted, mut rows: ReadModelRows) {
    use std::convert::identity;
    if wanted.directory {
        loaders.feed_many(rekey(rows.directory, DirectoryOf)).await;
    }
    if wanted.balances {
        loaders.feed_many(rekey(rows.balances, BalanceOf)).await;
    }
    if wanted.tiers {
        loaders.feed_many(every(keys, TierOf, rows.tiers, identity)).await;
    }
    if wanted.rfm {
        loaders.feed_many(every(keys, RfmOf, rows.rfm, identity)).await;
    }
    if wanted.stamp_cards {
        let cards = every(keys, StampCardsOf, rows.stamp_cards, Option::unwrap_or_default);
        loaders.feed_many(cards).await;
    }
    if wanted.tier_history {
        let history = every(keys, TierHistoryOf, rows.tier_history, Option::unwrap_or_default);
        loaders.feed_many(history).await;
    }
    if wanted.transitions {
        let transitions = every(keys, TransitionsOf, rows.transitions, Option::unwrap_or_default);
        loaders.feed_many(transitions).await;
    }
    if wanted.promotion_histories {
        loaders
            .feed_many(rekey(rows.promotion_histories, PromotionHistoryOf))
            .await;
    }
    if wanted.achievements {
        let achievements = every(keys, AchievementsOf, rows.achievements, Option::unwrap_or_default);
        loaders.feed_many(achievements).await;
    }
    if wanted.programs {
        loaders
            .feed_many(
                rows.programs
                    .into_iter()
                    .map(|(org, program)| (ProgramOf(org), program)),
            )
            .await;
    }
    if wanted.budgets {
        loaders
            .feed_many(rows.budgets.into_iter().map(|(org, left)| (BudgetsOf(org), left)))
            .await;
    }
    for location in &wanted.rank_locations {
        let ranks = keys.iter().map(|key| {
            let found = rows.ranks.remove(&(key.clone(), location.clone()));
            (RanksOf(key.clone(), location.clone()), found.unwrap_or_default())
        });
        loaders.feed_many(ranks).await;
    }
}

/// An entry for each of `keys`: what `found` holds for it, through `value` (which says what a
/// member without a row gets).
fn every<K, V, W>(
    keys: &[MemberKey],
    wrap: fn(MemberKey) -> K,
    mut found: HashMap<MemberKey, V>,
    value: fn(Option<V>) -> W,
) -> Vec<(K, W)> {
    keys.iter()
        .map(|key| (wrap(key.clone()), value(found.remove(key))))
        .collect()
}
