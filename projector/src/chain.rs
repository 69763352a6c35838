//! Several writes sent to Postgres as one statement.
//!
//! A batch writes a dozen tables. Sent one statement after the other, each is a round trip,
//! and on a machine whose cores are busy every round trip waits for the projector's and then
//! the backend's turn: at 800 purchases/s a batch spent most of its time so (BENCHMARKS.md).
//! A [`Chain`] gathers the writes, each as written alone with its own `$1, $2, …`, and sends
//! them as the data-modifying `WITH` clauses of a single statement: one round trip.
//!
//! What that asks of the writes in one chain (Postgres runs them on one snapshot): none reads
//! what another writes, and no two touch the same row. A write that depends on another goes in
//! a later chain (or statement).

use anyhow::Context as _;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments as _, Encode, PgConnection, Postgres, Type};

/// Writes gathered into one statement (module docs).
#[derive(Default)]
pub struct Chain {
    ctes: Vec<String>,
    /// Expressions of the final `SELECT`, each a `bigint`: what [`Chain::execute`] returns.
    select: Vec<String>,
    args: PgArguments,
    /// Parameters the statements so far named (`$n` of the chain).
    params: usize,
    /// What the statements write, for the error's context.
    what: Vec<&'static str>,
    error: Option<String>,
}

/// Binds the parameters of the statement just added, in the order of its `$1, $2, …` (a
/// parameter left unbound fails [`Chain::execute`]).
pub struct Bind<'c> {
    chain: &'c mut Chain,
    /// Where the statement's value is in what [`Chain::execute`] returns, if it has one.
    returned: Option<usize>,
}

impl Bind<'_> {
    pub fn bind<T>(self, value: T) -> Self
    where
        T: for<'q> Encode<'q, Postgres> + Type<Postgres>,
    {
        if let Err(error) = self.chain.args.add(value) {
            self.chain.error.get_or_insert_with(|| error.to_string());
        }
        self
    }

    /// Where to find the statement's value (a [`Chain::counted`] or [`Chain::select`]) in what
    /// [`Chain::execute`] returns.
    pub fn returned(self) -> Option<Returned> {
        self.returned.map(Returned)
    }
}

/// A value [`Chain::execute`] returns.
#[derive(Debug, Clone, Copy)]
pub struct Returned(usize);

impl Returned {
    pub fn of(self, values: &[i64]) -> i64 {
        values.get(self.0).copied().unwrap_or(0)
    }
}

impl Chain {
    pub fn new() -> Self {
        Self::default()
    }

    /// No statement yet.
    pub fn is_empty(&self) -> bool {
        self.ctes.is_empty() && self.select.is_empty()
    }

    /// Adds a data-modifying statement (`INSERT`, `UPDATE`, `DELETE`, written with its own
    /// `$1 … $n`) writing `what`.
    pub fn write(&mut self, what: &'static str, sql: &str) -> Bind<'_> {
        self.add_write(what, sql);
        Bind {
            chain: self,
            returned: None,
        }
    }

    /// Adds a data-modifying statement as [`Chain::write`] does, and the number of rows it
    /// writes to what [`Chain::execute`] returns ([`Bind::returned`]).
    pub fn counted(&mut self, what: &'static str, sql: &str) -> Bind<'_> {
        let name = self.add_write(what, &format!("{sql} RETURNING 1"));
        self.select.push(format!("(SELECT count(*) FROM {name})"));
        Bind {
            returned: Some(self.select.len() - 1),
            chain: self,
        }
    }

    fn add_write(&mut self, what: &'static str, sql: &str) -> String {
        let name = format!("w{}", self.ctes.len());
        let sql = self.renumber(sql);
        self.ctes.push(format!("{name} AS ({sql})"));
        self.what.push(what);
        name
    }

    /// Adds a `bigint` expression to the final `SELECT` (say, a function called for its
    /// effect), written with its own `$1 … $n`, whose value [`Chain::execute`] returns
    /// ([`Bind::returned`]).
    pub fn select(&mut self, what: &'static str, expression: &str) -> Bind<'_> {
        let expression = self.renumber(expression);
        self.select.push(format!("({expression})::bigint"));
        self.what.push(what);
        Bind {
            returned: Some(self.select.len() - 1),
            chain: self,
        }
    }

    /// Shifts the statement's parameters (`$` and digits) past those already in the chain, and
    /// counts its own.
    fn renumber(&mut self, sql: &str) -> String {
        let offset = self.params;
        let mut out = String::with_capacity(sql.len() + 16);
        let mut rest = sql;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..=at]);
            rest = &rest[at + 1..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if let Ok(k) = rest[..digits].parse::<usize>() {
                self.params = self.params.max(offset + k);
                out.push_str(&(offset + k).to_string());
                rest = &rest[digits..];
            }
        }
        out.push_str(rest);
        out
    }

    /// The statement as sent.
    fn sql(&self) -> String {
        let mut sql = String::new();
        if !self.ctes.is_empty() {
            sql.push_str("WITH ");
            sql.push_str(&self.ctes.join(", "));
            sql.push(' ');
        }
        sql.push_str("SELECT ");
        if self.select.is_empty() {
            sql.push('0');
        } else {
            sql.push_str(&self.select.join(", "));
        }
        sql
    }

    /// Sends the statements (nothing if there is none). Returns the values of the
    /// [`Chain::select`] expressions.
    pub async fn execute(self, conn: &mut PgConnection) -> anyhow::Result<Vec<i64>> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        let what = self.what.join(", ");
        if let Some(error) = &self.error {
            anyhow::bail!("binding the parameters of {what}: {error}");
        }
        anyhow::ensure!(
            self.args.len() == self.params,
            "{} parameters bound for the {} that {what} name",
            self.args.len(),
            self.params
        );
        let sql = self.sql();
        let row = sqlx::query_with(&sql, self.args)
            .fetch_one(&mut *conn)
            .await
            .with_context(|| format!("writing {what}"))?;
        (0..self.select.len())
            .map(|i| sqlx::Row::try_get::<i64, _>(&row, i))
            .collect::<Result<_, _>>()
            .context("reading what the writes returned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_renumbered_after_those_before_them() {
        let mut chain = Chain::new();
        chain
            .write(
                "a",
                "INSERT INTO a SELECT * FROM unnest($1::text[], $2::bigint[])",
            )
            .bind(vec!["x"])
            .bind(vec![1_i64]);
        let deleted = chain
            .counted("b", "DELETE FROM b WHERE k = $1 AND j = $10")
            .bind(1_i64)
            .returned()
            .unwrap();
        let notified = chain
            .select("c", "SELECT count(pg_notify($1, p)) FROM unnest($2::text[]) p")
            .returned()
            .unwrap();
        assert_eq!((deleted.of(&[7, 2]), notified.of(&[7, 2])), (7, 2));
        assert_eq!(
            chain.sql(),
            "WITH w0 AS (INSERT INTO a SELECT * FROM unnest($1::text[], $2::bigint[])), \
             w1 AS (DELETE FROM b WHERE k = $3 AND j = $12 RETURNING 1) \
             SELECT (SELECT count(*) FROM w1), \
             (SELECT count(pg_notify($13, p)) FROM unnest($14::text[]) p)::bigint"
        );
        assert_eq!(chain.params, 14);
    }

    #[test]
    fn an_empty_chain_has_nothing_to_send() {
        let chain = Chain::new();
        assert!(chain.is_empty());
        assert_eq!(chain.sql(), "SELECT 0");
    }
}
