//! Database schema of the loyalty platform.
//!
//! Owns the numbered SQL migrations under `schema/migrations/` (event store, API keys, and the
//! read models as they are added). A committed migration is never edited: sqlx checks its
//! checksum, so changes go into a new, higher-numbered file.
//!
//! ```no_run
//! # async fn demo(pool: sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
//! schema::migrate(&pool).await?;
//! # Ok(())
//! # }
//! ```

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::PgPool;

/// All migrations, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Applies every migration not yet applied to the database behind `pool`.
///
/// Safe to call concurrently and repeatedly: sqlx takes an advisory lock and records applied
/// migrations in `_sqlx_migrations`, so a second run is a no-op.
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    MIGRATOR.run(pool).await
}

/// The GraphQL SDL of the query service as checked in (`schema/graphql/schema.graphql`): the
/// contract integrators build against. A test of `loyalty-tests` fails when the served schema
/// differs from it (`UPDATE_SDL=1 cargo test -p loyalty-tests --test query_sdl` rewrites it).
pub const GRAPHQL_SDL_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/graphql/schema.graphql");
