use serde_json::Value;

use crate::helpers::spawn_app;

/// `proto/openapi.json` is the checked-in contract; it must match what the code serves.
/// Regenerate with `make openapi` (or LOGCANARY_REGENERATE=1 on this test).
#[test]
fn checked_in_openapi_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/openapi.json");
    let generated = logcanary_ingest_api::openapi::pretty();
    if std::env::var_os("LOGCANARY_REGENERATE").is_some() {
        std::fs::write(&path, &generated).expect("writing proto/openapi.json");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "proto/openapi.json differs from the API in the code; run `make openapi` and commit it"
    );
}

#[tokio::test]
async fn the_document_lists_every_endpoint() {
    let app = spawn_app().await;
    let doc: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/logs/",
        "/api/logs/{id}/",
        "/api/batch-analysis/",
        "/api/pattern-analysis/",
        "/api/real-time-analysis/",
        "/api/dashboard/",
        "/api/task-status/{task_id}/",
        "/api/logs/{id}/feedback/",
        "/api/templates/",
        "/api/review/",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    app.cleanup().await;
}
