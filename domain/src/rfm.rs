//! The RFM segment grid of SPEC §6: each (R, F) cell of 1–5 × 1–5 belongs to exactly one of
//! 11 segments. The projector's SQL function `rm.rfm_segment` states the same grid; a test of the
//! projector checks the two agree on all 25 cells.

use serde::{Deserialize, Serialize};

/// An RFM segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Segment {
    Champions,
    LoyalCustomers,
    PotentialLoyalists,
    NewCustomers,
    Promising,
    NeedAttention,
    AboutToSleep,
    AtRisk,
    CantLoseThem,
    Hibernating,
    Lost,
}

impl Segment {
    /// Every segment, best first (the order the query API lists them in).
    pub const ALL: [Segment; 11] = [
        Segment::Champions,
        Segment::LoyalCustomers,
        Segment::PotentialLoyalists,
        Segment::NewCustomers,
        Segment::Promising,
        Segment::NeedAttention,
        Segment::AboutToSleep,
        Segment::AtRisk,
        Segment::CantLoseThem,
        Segment::Hibernating,
        Segment::Lost,
    ];

    /// The segment's name as stored in the read models and shown by the API.
    pub fn name(self) -> &'static str {
        match self {
            Segment::Champions => "Champions",
            Segment::LoyalCustomers => "Loyal Customers",
            Segment::PotentialLoyalists => "Potential Loyalists",
            Segment::NewCustomers => "New Customers",
            Segment::Promising => "Promising",
            Segment::NeedAttention => "Need Attention",
            Segment::AboutToSleep => "About to Sleep",
            Segment::AtRisk => "At Risk",
            Segment::CantLoseThem => "Can't Lose Them",
            Segment::Hibernating => "Hibernating",
            Segment::Lost => "Lost",
        }
    }

    /// The segment named `name`, if any.
    pub fn from_name(name: &str) -> Option<Segment> {
        Segment::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The segment of the cell (`r`, `f`), `None` when a score is outside 1–5.
    pub fn of_cell(r: u8, f: u8) -> Option<Segment> {
        ((1..=5).contains(&r) && (1..=5).contains(&f)).then(|| segment(r, f))
    }
}

impl std::fmt::Display for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The segment of the cell (`r`, `f`), both scores 1–5 (a score outside that range falls in
/// `Lost`, as the lowest cells do; see [`Segment::of_cell`] for a strict reading).
pub fn segment(r: u8, f: u8) -> Segment {
    match (r, f) {
        (5, 1) => Segment::NewCustomers,
        (4 | 5, 2 | 3) => Segment::PotentialLoyalists,
        (5, 4 | 5) => Segment::Champions,
        (4, 1) => Segment::Promising,
        (3 | 4, 4 | 5) => Segment::LoyalCustomers,
        (3, 1 | 2) => Segment::AboutToSleep,
        (3, 3) => Segment::NeedAttention,
        (2, 1 | 2) => Segment::Hibernating,
        (1 | 2, 3 | 4) => Segment::AtRisk,
        (1 | 2, 5) => Segment::CantLoseThem,
        _ => Segment::Lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC §6, row by row from R = 5 down to R = 1, columns F = 1 to 5.
    const SPEC_GRID: [[&str; 5]; 5] = [
        [
            "New Customers",
            "Potential Loyalists",
            "Potential Loyalists",
            "Champions",
            "Champions",
        ],
        [
            "Promising",
            "Potential Loyalists",
            "Potential Loyalists",
            "Loyal Customers",
            "Loyal Customers",
        ],
        [
            "About to Sleep",
            "About to Sleep",
            "Need Attention",
            "Loyal Customers",
            "Loyal Customers",
        ],
        [
            "Hibernating",
            "Hibernating",
            "At Risk",
            "At Risk",
            "Can't Lose Them",
        ],
        ["Lost", "Lost", "At Risk", "At Risk", "Can't Lose Them"],
    ];

    #[test]
    fn the_grid_is_the_spec_table() {
        for (row, names) in SPEC_GRID.iter().enumerate() {
            let r = 5 - row as u8;
            for (column, name) in names.iter().enumerate() {
                let f = column as u8 + 1;
                assert_eq!(segment(r, f).name(), *name, "cell R={r} F={f}");
                assert_eq!(Segment::of_cell(r, f), Some(segment(r, f)));
            }
        }
    }

    #[test]
    fn every_segment_has_a_cell_and_a_unique_name() {
        for s in Segment::ALL {
            assert!(
                (1..=5).any(|r| (1..=5).any(|f| segment(r, f) == s)),
                "{s} has no cell"
            );
            assert_eq!(Segment::from_name(s.name()), Some(s));
        }
        let names: std::collections::BTreeSet<_> = Segment::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), 11);
    }

    #[test]
    fn scores_outside_one_to_five_have_no_cell() {
        assert_eq!(Segment::of_cell(0, 3), None);
        assert_eq!(Segment::of_cell(3, 6), None);
        assert_eq!(segment(0, 0), Segment::Lost);
    }
}
