//! Integration tests of the ingest API against the real Postgres and RabbitMQ: one test
//! binary, each test with its own database and queue names.

mod alerts;
mod feedback;
mod helpers;
mod openapi;
mod patterns;
mod periodic;
mod reads;
mod review;
mod signatures;
mod writes;
