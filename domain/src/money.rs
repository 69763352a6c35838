//! Money and points arithmetic: integers only, every operation checked (SPEC §2, §3).

/// Minor-unit digits of an ISO-4217 currency code (2 for EUR, 0 for JPY), or `None` when the
/// code is unknown or has no minor unit defined (e.g. XAU).
pub fn currency_digits(code: &str) -> Option<u32> {
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let currency = iso_currency::Currency::from_code(code)?;
    currency.exponent().map(u32::from)
}

/// `floor(amount_minor × earn_rate / 10^digits)` — whole points per whole currency unit.
/// `None` on overflow or a negative input.
pub fn base_points(amount_minor: i64, earn_rate: i64, digits: u32) -> Option<i64> {
    if amount_minor < 0 || earn_rate < 0 {
        return None;
    }
    let scale = 10_i128.checked_pow(digits)?;
    let product = i128::from(amount_minor).checked_mul(i128::from(earn_rate))?;
    i64::try_from(product / scale).ok()
}

/// `floor(points × multiplier_bps / 10000)`.
pub fn apply_multiplier(points: i64, multiplier_bps: u32) -> Option<i64> {
    let product = i128::from(points).checked_mul(i128::from(multiplier_bps))?;
    i64::try_from(product.div_euclid(10_000)).ok()
}

/// The cumulative clawback of a purchase after `refunded_so_far` of its `amount_minor` has been
/// refunded: `floor(points_earned × refunded_so_far / amount_minor)` (SPEC §3 Returns).
pub fn cumulative_clawback(points_earned: i64, refunded_so_far: i64, amount_minor: i64) -> Option<i64> {
    if amount_minor <= 0 || refunded_so_far < 0 || points_earned < 0 {
        return None;
    }
    let product = i128::from(points_earned).checked_mul(i128::from(refunded_so_far))?;
    i64::try_from(product / i128::from(amount_minor)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_digits_follow_iso_4217() {
        assert_eq!(currency_digits("EUR"), Some(2));
        assert_eq!(currency_digits("USD"), Some(2));
        assert_eq!(currency_digits("JPY"), Some(0));
        assert_eq!(currency_digits("BHD"), Some(3));
        assert_eq!(currency_digits("eur"), None);
        assert_eq!(currency_digits("XXX1"), None);
        assert_eq!(currency_digits("ABC"), None);
    }

    #[test]
    fn base_points_floor() {
        assert_eq!(base_points(1999, 1, 2), Some(19));
        assert_eq!(base_points(1999, 3, 2), Some(59));
        assert_eq!(base_points(1500, 1, 0), Some(1500));
        assert_eq!(base_points(i64::MAX, i64::MAX, 2), None);
        assert_eq!(base_points(-1, 1, 2), None);
    }

    #[test]
    fn multiplier_floor() {
        assert_eq!(apply_multiplier(19, 12_500), Some(23));
        assert_eq!(apply_multiplier(100, 10_000), Some(100));
        assert_eq!(apply_multiplier(i64::MAX, 20_000), None);
    }

    #[test]
    fn cumulative_clawback_adds_up_exactly() {
        // Three partial refunds of a 3-unit purchase that earned 10 points: 3 + 3 + 4 = 10.
        let total_1 = cumulative_clawback(10, 1, 3).unwrap();
        let total_2 = cumulative_clawback(10, 2, 3).unwrap();
        let total_3 = cumulative_clawback(10, 3, 3).unwrap();
        assert_eq!((total_1, total_2 - total_1, total_3 - total_2), (3, 3, 4));
    }
}
