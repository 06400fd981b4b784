//! Integration tests of the ingest API against the real Postgres and RabbitMQ: one test
//! binary, each test with its own database and queue names.

mod feedback;
mod helpers;
mod openapi;
mod reads;
mod signatures;
mod writes;
