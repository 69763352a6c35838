//! Rows written back whole: the rows the batch read are updated, the others inserted.
//!
//! A batch reads its members' rows and its aggregates' checkpoints after taking its part's
//! lock (`crate::batch::begin`), and no other transaction writes them while it holds it: it
//! knows which rows exist. An upsert
//! (`INSERT … ON CONFLICT DO UPDATE`) would find that out again, row by row, and pay for it:
//! an existing row is first locked (a WAL record of its own) and a new one is inserted
//! speculatively, then confirmed (another). Those were ~7 % of a purchase's WAL
//! (BENCHMARKS.md). A plain `UPDATE` of the rows read and a plain `INSERT` of the others
//! write neither; the update is counted ([`Chain::updated`]), so a row that went missing fails
//! the batch instead of losing the update.

use std::collections::{BTreeMap, BTreeSet};

use super::{MemberState, Touched};
use crate::chain::{Bind, Chain};
use domain::MemberKey;

/// Which of a member's rows the batch read from the tables (they exist); rows an event of the
/// batch created are not here. Events never change it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadRows {
    pub balance: bool,
    pub tier: bool,
    /// Card ids.
    pub stamps: BTreeSet<String>,
    /// Transaction ids.
    pub purchases: BTreeSet<String>,
    /// Achievement ids.
    pub achievements: BTreeSet<String>,
    /// Location ids (`""`: org-wide).
    pub leaderboard: BTreeSet<String>,
}

/// A table of member rows, one per key.
pub(crate) struct Table {
    pub name: &'static str,
    /// Every column with its SQL type, in the order [`write_back`]'s `bind` binds them; the
    /// first [`Table::key`] of them are the primary key.
    pub columns: &'static [(&'static str, &'static str)],
    pub key: usize,
    /// The columns an update sets (the others never change once written).
    pub updates: &'static [&'static str],
}

impl Table {
    fn arrays(&self) -> String {
        let arrays: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| format!("${}::{ty}[]", i + 1))
            .collect();
        arrays.join(", ")
    }

    fn names(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(name, _)| *name).collect();
        names.join(", ")
    }

    fn insert_sql(&self) -> String {
        format!(
            "INSERT INTO {} ({}) SELECT * FROM unnest({})",
            self.name,
            self.names(),
            self.arrays()
        )
    }

    fn update_sql(&self) -> String {
        let set: Vec<String> = self.updates.iter().map(|c| format!("{c} = u.{c}")).collect();
        let key: Vec<String> = self.columns[..self.key]
            .iter()
            .map(|(c, _)| format!("t.{c} = u.{c}"))
            .collect();
        format!(
            "UPDATE {} AS t SET {} FROM unnest({}) AS u({}) WHERE {}",
            self.name,
            set.join(", "),
            self.arrays(),
            self.names(),
            key.join(" AND ")
        )
    }
}

/// Writes `rows` to `table`: those for which `read` holds by an `UPDATE`, the others by an
/// `INSERT`. `bind` binds the columns of some of the rows, in the table's order. Both
/// statements are sent whenever there are rows, one of them perhaps for none: the chain's text
/// (prepared once per connection) then depends on which tables a batch writes, not also on
/// whether its members are new.
pub(crate) fn write_back<R>(
    chain: &mut Chain,
    table: &Table,
    rows: &[R],
    read: impl Fn(&R) -> bool,
    bind: impl for<'c> Fn(Bind<'c>, &[&R]) -> Bind<'c>,
) {
    if rows.is_empty() {
        return;
    }
    let (updated, inserted): (Vec<&R>, Vec<&R>) = rows.iter().partition(|r| read(r));
    bind(chain.write(table.name, &table.insert_sql()), &inserted);
    let count = updated.len();
    bind(chain.updated(table.name, &table.update_sql(), count), &updated);
}

/// A row of a member's map of rows: the member, the row's id, the row, and whether the batch
/// read it.
pub(crate) type Keyed<'a, R> = (&'a MemberKey, &'a String, &'a R, bool);

/// The rows of the touched members in one of their maps, with the ids of those read (`rows`
/// picks both).
pub(crate) fn keyed_rows<'a, R>(
    touched: &Touched<'a>,
    rows: impl Fn(&'a MemberState) -> (&'a BTreeMap<String, R>, &'a BTreeSet<String>),
) -> Vec<Keyed<'a, R>> {
    touched
        .iter()
        .flat_map(|(k, s)| {
            let (rows, read) = rows(s);
            rows.iter().map(move |(id, row)| (*k, id, row, read.contains(id)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARDS: Table = Table {
        name: "cards",
        columns: &[
            ("org_id", "text"),
            ("member_id", "uuid"),
            ("stamps", "int"),
            ("day", "date"),
        ],
        key: 2,
        updates: &["stamps"],
    };

    #[test]
    fn rows_read_are_updated_by_key_and_the_others_inserted() {
        assert_eq!(
            CARDS.insert_sql(),
            "INSERT INTO cards (org_id, member_id, stamps, day) \
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::int[], $4::date[])"
        );
        assert_eq!(
            CARDS.update_sql(),
            "UPDATE cards AS t SET stamps = u.stamps \
             FROM unnest($1::text[], $2::uuid[], $3::int[], $4::date[]) AS u(org_id, member_id, stamps, day) \
             WHERE t.org_id = u.org_id AND t.member_id = u.member_id"
        );
    }
}
