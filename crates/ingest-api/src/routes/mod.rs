//! The HTTP API of API.md, one module per resource. This module only registers them;
//! each module's `configure` adds its resources, every one answering other methods with
//! a JSON 405 ([`crate::fallback::resource`]).

use actix_web::web;

pub mod alerts;
pub mod analysis;
pub mod dashboard;
pub mod entries;
pub mod keys;
pub mod openapi;
pub mod page;
pub mod patterns;
pub mod periodic;
pub mod review;
pub mod shippers;
pub mod stats;
pub mod tasks;
pub mod templates;

/// Registers every API route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(entries::configure)
        .configure(analysis::configure)
        .configure(dashboard::configure)
        .configure(tasks::configure)
        .configure(openapi::configure)
        .configure(templates::configure)
        .configure(review::configure)
        .configure(alerts::configure)
        .configure(periodic::configure)
        .configure(patterns::configure)
        .configure(stats::configure)
        .configure(keys::configure)
        .configure(shippers::configure)
        .configure(page::configure);
}
