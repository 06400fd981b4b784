//! Integration tests of the notifier against the real Postgres and RabbitMQ, in one test
//! binary: claiming alerts (`claim`) and delivering them to real receivers (`delivery`).

mod claim;
mod delivery;
