//! Integration tests of the infrastructure: the harness itself, the schema (event store on
//! postgres-es, append-only trigger, API keys table), API keys and the health endpoints.
//! One test binary, to keep linking cheap.

mod harness;
mod health;
mod keys;
mod schema;
