//! Integration tests of the ingest API against the real Postgres and RabbitMQ, and the
//! dashboard in a real browser (`browser`): one test binary, each test with its own
//! database and queue names.

mod alerts;
mod browser;
mod feedback;
mod helpers;
mod openapi;
mod patterns;
mod periodic;
mod read_limits;
mod reads;
mod review;
mod security;
mod shippers;
mod signatures;
mod validation_props;
mod writes;
