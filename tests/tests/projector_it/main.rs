//! Integration tests of the projector against the real Postgres and NATS: exact read models of
//! scripted scenarios, RFM against a brute-force computation, redelivery, gaps, poison events,
//! crashes in the middle of a batch, and audits after a large random workload. One test binary,
//! to keep linking cheap; every test has its own database, stream and consumer.

mod audit;
mod catch_up;
mod promotions;
mod resilience;
mod rfm;
mod scenarios;
mod support;
