//! A bound on the size of a query once its fragments are expanded, checked right after parsing.
//!
//! Depth and complexity limits are computed by walking the query with every fragment spread
//! expanded. A document of a few hundred bytes can spread a fragment twice, which spreads the
//! next twice, thirty times over: 2^30 fields, and validation alone then keeps a core busy for
//! minutes (found by the GraphQL fuzz test; async-graphql's recursion-depth check, which runs
//! while parsing, is itself such a walk). The expanded size is counted here before that, each
//! fragment once (memoised), so the check is linear in the document.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, FragmentDefinition, Selection, SelectionSet};
use async_graphql::{Name, Positioned, ServerError, ServerResult, Variables};

/// Most fields a query may select once its fragments are expanded: above what the complexity
/// limits let through (every field counts at least one there), so only absurd documents meet it.
pub const MAX_EXPANDED_FIELDS: u64 = 50_000;

/// The extension refusing documents above [`MAX_EXPANDED_FIELDS`].
pub struct DocumentSize;

impl ExtensionFactory for DocumentSize {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(DocumentSizeExtension)
    }
}

struct DocumentSizeExtension;

#[async_graphql::async_trait::async_trait]
impl Extension for DocumentSizeExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        // Before `next`: async-graphql's own parse step already walks every spread (its
        // recursion-depth check), which is where a fragment bomb spends its time. Parsing is
        // linear; a document that does not parse is left to `next` to report.
        if let Ok(document) = async_graphql::parser::parse_query(query) {
            check(&document)?;
        }
        next.run(ctx, query, variables).await
    }
}

/// Refuses `document` if an operation selects more than [`MAX_EXPANDED_FIELDS`] fields.
fn check(document: &ExecutableDocument) -> ServerResult<()> {
    let mut counter = Counter {
        fragments: &document.fragments,
        sizes: HashMap::new(),
    };
    for (_, operation) in document.operations.iter() {
        if counter.selection_set(&operation.node.selection_set.node) > MAX_EXPANDED_FIELDS {
            return Err(ServerError::new(
                format!("Query is too large: more than {MAX_EXPANDED_FIELDS} fields once its fragments are expanded."),
                Some(operation.pos),
            ));
        }
    }
    Ok(())
}

struct Counter<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    /// Expanded size per fragment; `None` while it is being counted (a cycle counts 0 here and
    /// is refused by validation).
    sizes: HashMap<&'a str, Option<u64>>,
}

impl<'a> Counter<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet) -> u64 {
        set.items.iter().fold(0u64, |total, item| {
            let size = match &item.node {
                Selection::Field(field) => {
                    1u64.saturating_add(self.selection_set(&field.node.selection_set.node))
                }
                Selection::InlineFragment(inline) => self.selection_set(&inline.node.selection_set.node),
                Selection::FragmentSpread(spread) => self.fragment(spread.node.fragment_name.node.as_str()),
            };
            total.saturating_add(size)
        })
    }

    fn fragment(&mut self, name: &'a str) -> u64 {
        if let Some(size) = self.sizes.get(name) {
            return size.unwrap_or(0);
        }
        let Some(fragment) = self.fragments.get(name) else {
            return 0;
        };
        self.sizes.insert(name, None);
        let size = self.selection_set(&fragment.node.selection_set.node);
        self.sizes.insert(name, Some(size));
        size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded(query: &str) -> u64 {
        let document = async_graphql::parser::parse_query(query).unwrap();
        let mut counter = Counter {
            fragments: &document.fragments,
            sizes: HashMap::new(),
        };
        let (_, operation) = document.operations.iter().next().unwrap();
        counter.selection_set(&operation.node.selection_set.node)
    }

    #[test]
    fn fragments_count_once_per_spread_and_cycles_end() {
        assert_eq!(expanded("{ a { b c } }"), 3);
        assert_eq!(expanded("{ ...F ...F } fragment F on Query { a b }"), 4);
        let mut bomb = String::from("{ ...F0 } ");
        for i in 0..40 {
            bomb.push_str(&format!(
                "fragment F{i} on Query {{ ...F{} ...F{} }} ",
                i + 1,
                i + 1
            ));
        }
        bomb.push_str("fragment F40 on Query { a }");
        assert_eq!(expanded(&bomb), 1 << 40);
        assert_eq!(expanded("{ ...A } fragment A on Query { x ...A }"), 1);
        let document = async_graphql::parser::parse_query(&bomb).unwrap();
        let error = check(&document).unwrap_err();
        assert!(
            error.message.starts_with("Query is too large"),
            "{}",
            error.message
        );
    }
}
