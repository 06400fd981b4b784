//! The ingest API: verifies signed log entries, stores them with their analysis tasks
//! in one transaction, publishes the tasks to RabbitMQ, and serves results, the dashboard
//! JSON, task status and the OpenAPI document.
//!
//! It does not score: scoring happens in the workers. Of the detector it uses only the pure
//! review ranking ([`detector::review`], for `GET /api/review/`); ONNX Runtime is loaded at
//! run time by the workers alone, never by this binary.

pub mod alerts;
pub mod auth;
pub mod body;
pub mod config;
pub mod errors;
pub mod ingest;
pub mod openapi;
pub mod patterns;
pub mod periodic;
pub mod review;
pub mod routes;
pub mod startup;
pub mod templates;
pub mod validation;
pub mod web;
