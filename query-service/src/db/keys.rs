//! Batch reads: many members' keys in, one statement, rows keyed by member out.
//!
//! Keys are passed as two parallel arrays and joined through `rm.member_keys` (migration
//! 0012: an `unnest` whose row estimate keeps the generic plan on the primary keys), so the
//! statement text does not depend on how many there are and one prepared plan serves every
//! batch size.

use std::collections::HashMap;
use std::hash::Hash;

use domain::ids::MemberKey;
use uuid::Uuid;

/// Splits keys into the parallel arrays `unnest` takes.
pub(super) fn key_arrays(keys: &[MemberKey]) -> (Vec<String>, Vec<Uuid>) {
    keys.iter().map(|key| (key.org_id.clone(), key.member_id)).unzip()
}

/// A read-model row with the member it belongs to (from a statement's columns, or from the
/// JSON object of a row of [`super::read_models`]).
#[derive(sqlx::FromRow, serde::Deserialize)]
pub(super) struct Keyed<T> {
    org_id: String,
    member_id: Uuid,
    #[sqlx(flatten)]
    #[serde(flatten)]
    row: T,
}

impl<T> Keyed<T> {
    pub(super) fn split(self) -> (MemberKey, T) {
        let key = MemberKey {
            org_id: self.org_id,
            member_id: self.member_id,
        };
        (key, self.row)
    }
}

/// Rows of a read model with one row per member.
pub(super) fn keyed<T>(rows: Vec<Keyed<T>>) -> HashMap<MemberKey, T> {
    rows.into_iter().map(Keyed::split).collect()
}

/// Rows of a read model with many rows per member (or per other key), in the order the
/// statement returned them.
pub(super) fn grouped<K: Eq + Hash, T>(rows: impl IntoIterator<Item = (K, T)>) -> HashMap<K, Vec<T>> {
    let mut groups: HashMap<K, Vec<T>> = HashMap::new();
    for (key, row) in rows {
        groups.entry(key).or_default().push(row);
    }
    groups
}

/// [`grouped`] rows that carry their member.
pub(super) fn grouped_keyed<T>(rows: Vec<Keyed<T>>) -> HashMap<MemberKey, Vec<T>> {
    grouped(rows.into_iter().map(Keyed::split))
}
