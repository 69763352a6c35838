//! Page sizes and opaque cursors.
//!
//! Lists are paged by keyset, never by offset: a cursor holds the sort key and the id of the
//! last row returned, and the next page starts strictly after that pair. Rows inserted while a
//! client pages (new members, new events) can therefore neither shift a page nor make a row
//! appear twice. Cursors are base64 JSON (`OpaqueCursor`): clients must treat them as opaque.

use async_graphql::connection::{CursorType as _, OpaqueCursor};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{QueryError, QueryResult};

/// Page size of a list when `first` is not given (or null).
pub const DEFAULT_PAGE: i32 = 20;
/// Largest `first` any list accepts.
pub const MAX_PAGE_SIZE: i32 = 100;

/// Checks `first` (the argument named `argument`) against `1..=MAX_PAGE_SIZE`.
pub fn page_size(argument: &str, first: i32) -> QueryResult<i64> {
    if (1..=MAX_PAGE_SIZE).contains(&first) {
        Ok(i64::from(first))
    } else {
        Err(QueryError::bad_input(format!(
            "{argument}: must be between 1 and {MAX_PAGE_SIZE} (got {first}); page with `after` for more"
        )))
    }
}

/// The complexity a list of `first` items contributes: its children's cost per item, with
/// `first` clamped to the page size (an out-of-range `first` is refused with its own clear
/// error when the field runs, rather than as "too complex").
pub fn list_complexity(first: i32, child_complexity: usize) -> usize {
    usize::try_from(first.clamp(1, MAX_PAGE_SIZE))
        .unwrap_or(1)
        .saturating_mul(child_complexity)
}

/// Cuts the `limit + 1` rows read for a page to the page: the rows, and whether more follow.
pub fn page<T>(mut rows: Vec<T>, limit: i64) -> (Vec<T>, bool) {
    let has_next = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    (rows, has_next)
}

/// Decodes the `after` argument.
pub fn decode<T: Serialize + DeserializeOwned>(after: Option<&str>) -> QueryResult<Option<T>> {
    after
        .map(|text| {
            OpaqueCursor::<T>::decode_cursor(text)
                .map(|cursor| cursor.0)
                .map_err(|_| QueryError::bad_input("after: not a cursor returned by this list"))
        })
        .transpose()
}

/// Encodes a cursor.
pub fn encode<T: Serialize + DeserializeOwned>(value: T) -> String {
    OpaqueCursor(value).encode_cursor()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(page_size("first", 1).unwrap(), 1);
        assert_eq!(page_size("first", 100).unwrap(), 100);
        let error = page_size("first", 101).unwrap_err();
        assert_eq!(error.code(), "BAD_USER_INPUT");
        assert_eq!(
            error.message(),
            "first: must be between 1 and 100 (got 101); page with `after` for more"
        );
        assert!(page_size("first", 0).is_err());
        assert!(page_size("first", -5).is_err());
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let text = encode((42_i64, "x".to_owned()));
        assert_eq!(
            decode::<(i64, String)>(Some(&text)).unwrap(),
            Some((42, "x".to_owned()))
        );
        assert_eq!(decode::<(i64, String)>(None).unwrap(), None);
        let error = decode::<(i64, String)>(Some("not-a-cursor")).unwrap_err();
        assert_eq!(error.code(), "BAD_USER_INPUT");
    }

    #[test]
    fn a_page_is_cut_to_its_limit() {
        assert_eq!(page(vec![1, 2, 3], 2), (vec![1, 2], true));
        assert_eq!(page(vec![1, 2], 2), (vec![1, 2], false));
    }

    #[test]
    fn list_complexity_is_clamped() {
        assert_eq!(list_complexity(10, 3), 30);
        assert_eq!(list_complexity(1_000_000, 3), 300);
        assert_eq!(list_complexity(-1, 3), 3);
    }
}
