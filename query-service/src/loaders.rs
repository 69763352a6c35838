//! DataLoaders for every edge from a member (or an org) to a read model.
//!
//! Resolving a field of many members at once (a page of `members`, a list of transitions)
//! queues one key per member; the loader runs one statement for the whole batch, so a page of
//! 100 members with balance, tier, RFM and stamp cards costs the same handful of statements as
//! a page of one. The loaders do not cache (each `load` reads the database), so one instance is
//! shared by every request and a response never shows data older than the request.

use std::collections::HashMap;
use std::hash::Hash;

use async_graphql::dataloader::{DataLoader, Loader};

use crate::db::{
    BalanceRow, Db, FullProgram, LeaderboardRow, MemberRow, PeriodKeys, RfmRow, StampCardRow, TierChangeRow,
    TierRow, TransitionRow,
};
use crate::error::QueryError;
use crate::live::MemberKey;

/// The loaders of all read models.
pub type Loaders = DataLoader<ReadModels>;

/// Builds the shared loaders on `db`.
pub fn loaders(db: Db) -> Loaders {
    DataLoader::new(ReadModels { db }, tokio::spawn)
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
