//! The ingest API: verifies signed log entries, stores them with their analysis tasks
//! in one transaction, publishes the tasks to RabbitMQ, and serves results, the dashboard
//! JSON, task status and the OpenAPI document.
//!
//! It does not score: scoring happens in the workers. Of the detector it uses only the pure
//! review ranking ([`detector::review`], for `GET /api/review/`); ONNX Runtime is loaded at
//! run time by the workers alone, never by this binary.
//!
//! Layout: [`routes`] holds one module per HTTP resource and only handles requests; what
//! they share lives in modules named after it: the request state ([`state`]), the
//! extractors that check a request before its handler runs ([`access`] for reads,
//! [`body`] for signed writes, [`shipper`] and [`tokens`] for the log shippers' protocols
//! and API tokens), query-string checks ([`query`], [`pagination`]), error
//! bodies ([`errors`], [`fallback`]) and time formatting ([`rfc3339`]).

pub mod access;
pub mod auth;
pub mod body;
pub mod broker;
pub mod config;
pub mod errors;
pub mod fallback;
pub mod feedback;
pub mod ingest;
pub mod openapi;
pub mod pagination;
pub mod query;
pub mod review;
pub mod rfc3339;
pub mod routes;
pub mod shipper;
pub mod startup;
pub mod state;
pub mod tokens;
pub mod validation;

#[cfg(test)]
mod secret_settings_tests;
