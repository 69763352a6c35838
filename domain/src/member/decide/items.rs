//! The basket lines of a purchase (SPEC §9 "Basket lines"): checked before anything is earned.

use crate::member::earn::Line;
use crate::member::errors::MemberError;
use crate::member::limits::{MAX_ITEMS, MAX_ITEM_NAME};

/// Refuses an empty basket, more than [`MAX_ITEMS`] lines, a line with no unit or a negative
/// amount, an empty or over-long sku or category, and lines whose amounts do not add up to
/// the purchase's `amount_minor` exactly.
pub(super) fn check_items(items: Option<&[Line]>, amount_minor: i64) -> Result<(), MemberError> {
    let Some(items) = items else {
        return Ok(());
    };
    let invalid = |message: String| Err(MemberError::InvalidItems(message));
    if items.is_empty() {
        return invalid("must hold at least one line (leave items out for a purchase without lines)".into());
    }
    if items.len() > MAX_ITEMS {
        return invalid(format!("at most {MAX_ITEMS} lines"));
    }
    let mut sum: i64 = 0;
    for (i, line) in items.iter().enumerate() {
        if line.quantity == 0 {
            return invalid(format!("[{i}].quantity must be at least 1"));
        }
        if line.amount_minor < 0 {
            return invalid(format!("[{i}].amount_minor must not be negative"));
        }
        for (name, value) in [("sku", &line.sku), ("category", &line.category)] {
            if value
                .as_ref()
                .is_some_and(|v| v.is_empty() || v.chars().count() > MAX_ITEM_NAME)
            {
                return invalid(format!("[{i}].{name} must be 1 to {MAX_ITEM_NAME} characters"));
            }
        }
        sum = match sum.checked_add(line.amount_minor) {
            Some(sum) => sum,
            None => return invalid("the line amounts overflow".into()),
        };
    }
    if sum != amount_minor {
        return invalid(format!(
            "the line amounts add up to {sum}, not the purchase's amount_minor {amount_minor}"
        ));
    }
    Ok(())
}
