//! The OpenAPI 3 document, generated from the handlers' annotations. A copy lives in
//! `proto/openapi.json`; a test fails when the two drift apart.

use utoipa::{
    openapi::security::{ApiKey, ApiKeyValue, SecurityScheme},
    Modify, OpenApi,
};

use crate::{patterns, routes, templates};

#[derive(OpenApi)]
#[openapi(
    info(title = "logcanary ingest API", description = "Signed log ingestion, analysis tasks and results. Writes carry X-HMAC-Signature (see API.md)."),
    paths(
        routes::create_log,
        routes::list_logs,
        routes::get_log,
        routes::batch_analysis,
        routes::pattern_analysis,
        routes::real_time_analysis,
        routes::dashboard,
        routes::task_status,
        templates::feedback,
        templates::list_templates,
        crate::review::review_queue,
        crate::alerts::list_alerts,
        crate::periodic::list_periodic_tasks,
        crate::periodic::create_periodic_task,
        crate::periodic::get_periodic_task,
        crate::periodic::update_periodic_task,
        crate::periodic::delete_periodic_task,
        patterns::list_patterns,
        crate::web::queue_stats,
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
