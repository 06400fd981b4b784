//! The OpenAPI 3 document, generated from the handlers' annotations. A copy lives in
//! `proto/openapi.json`; a test fails when the two drift apart.
//!
//! Each operation's tag is set on its handler (`tag = ...`): they are the module paths the
//! handlers had when the document was first published, kept so the document stays the
//! same whatever the modules are called now.

use utoipa::{
    openapi::security::{ApiKey, ApiKeyValue, SecurityScheme},
    Modify, OpenApi,
};

use crate::routes::{
    alerts, analysis, dashboard, entries, patterns, periodic, review, stats, tasks, templates,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "logcanary ingest API", description = "Signed log ingestion, analysis tasks and results. Writes carry X-HMAC-Signature (see API.md)."),
    paths(
        entries::create_log,
        entries::list_logs,
        entries::get_log,
        analysis::batch_analysis,
        analysis::pattern_analysis,
        analysis::real_time_analysis,
        dashboard::dashboard,
        tasks::task_status,
        templates::feedback,
        templates::list_templates,
        review::review_queue,
        alerts::list_alerts,
        periodic::list_periodic_tasks,
        periodic::create_periodic_task,
        periodic::get_periodic_task,
        periodic::update_periodic_task,
        periodic::delete_periodic_task,
        patterns::list_patterns,
        stats::queue_stats,
    ),
    modifiers(&HmacScheme)
)]
struct ApiDoc;

struct HmacScheme;

impl Modify for HmacScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "hmac",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-HMAC-Signature",
                "hex HMAC-SHA256 of the raw body, `sha256=<hex>`, or `t=<unix seconds>,v1=<hex of HMAC(\"<t>.<body>\")>`",
            ))),
        );
    }
}

/// The document as JSON.
pub fn document() -> serde_json::Value {
    serde_json::to_value(ApiDoc::openapi())
        .unwrap_or_else(|e| serde_json::json!({"error": e.to_string()}))
}

/// Pretty JSON with a final newline, as checked in.
pub fn pretty() -> String {
    let mut text = serde_json::to_string_pretty(&document()).unwrap_or_default();
    text.push('\n');
    text
}
