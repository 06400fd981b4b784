//! Shared plumbing for every logcanary binary: configuration helpers, telemetry,
//! shutdown signalling, the admin server (`/livez`, `/readyz`, `/metrics`) and HMAC
//! request signing.
//!
//! This crate must not depend on the database, the broker or the detector: it is the
//! bottom of the dependency graph, so every binary can use it without pulling those in.

pub mod admin;
pub mod config;
pub mod shutdown;
pub mod signing;
pub mod telemetry;
