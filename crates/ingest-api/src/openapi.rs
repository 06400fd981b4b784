//! The OpenAPI 3 document, generated from the handlers' annotations. A copy lives in
//! `proto/openapi.json`; a test fails when the two drift apart.
//!
//! Each operation's tag is set on its handler (`tag = ...`): they are the module paths the
//! handlers had when the document was first published, kept so the document stays the
//! same whatever the modules are called now.

use utoipa::{
    openapi::{
        security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        },
        ContentBuilder, ResponseBuilder,
    },
    Modify, OpenApi,
};

use crate::routes::{
    alerts, analysis, dashboard, entries, keys, patterns, periodic, review, stats, tasks, templates,
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
        keys::list_keys,
    ),
    modifiers(&HmacScheme)
)]
struct ApiDoc;

struct HmacScheme;

impl Modify for HmacScheme {
    /// The two credentials, and on every GET the ones that may read (with 401 and 403):
    /// writes name their scopes on their handlers.
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "hmac",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-HMAC-Signature",
                "`t=<unix seconds>,v2=<hex>`: HMAC-SHA256 of \"v2\\n<METHOD>\\n<path>\\n<query>\\n<t>\\n\" + body with a key holding the scope (API.md). The old API's POST endpoints also take `t=<t>,v1=<hex of HMAC(\"<t>.<body>\")>` and, in development, the hex HMAC of the body alone.",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "LOGCANARY_READ_TOKEN (read) or LOGCANARY_DASHBOARD_TOKEN (read, operate)",
                    ))
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let Some(get) = item.get.as_mut() else {
                continue;
            };
            let scope = if path == "/api/keys/" {
                "admin"
            } else {
                "read"
            };
            let mut credentials = vec![SecurityRequirement::new("hmac", [scope])];
            if scope == "read" {
                credentials.insert(0, SecurityRequirement::new("bearer", [scope]));
            }
            get.security = Some(credentials);
            for (status, what) in [
                ("401", "No credential, or one that does not hold (reads are open only in development without a read token)."),
                ("403", "The credential lacks the scope."),
            ] {
                get.responses.responses.entry(status.to_owned()).or_insert_with(|| {
                    utoipa::openapi::RefOr::T(
                        ResponseBuilder::new()
                            .description(what)
                            .content(
                                "application/json",
                                ContentBuilder::new()
                                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                                    .build(),
                            )
                            .build(),
                    )
                });
            }
        }
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
