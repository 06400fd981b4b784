//! `GET /api/keys/` *(added)*: which HMAC keys exist and what each may do, for the
//! `admin` scope only. Ids, scopes and where each key comes from; never a secret.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{access::AdminAccess, errors::ApiError, fallback::resource, state::AppState};

/// Registers the key listing.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/keys/").route(web::get().to(list_keys)));
}

#[derive(Serialize, ToSchema)]
pub struct KeyOut {
    key_id: String,
    scopes: Vec<&'static str>,
    /// `config` (`LOGCANARY_HMAC_KEYS`) or `database` (`api_keys`).
    source: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    results: Vec<KeyOut>,
}

/// The HMAC keys: ids, scopes and where each is configured; never a secret.
#[utoipa::path(get, path = "/api/keys/", tag = "routes",
    responses((status = 200, body = KeyList)))]
pub async fn list_keys(
    _: AdminAccess,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let keys = state.verifier.all_keys().await;
    let configured = state.verifier.config_key_count();
    let results = keys
        .iter()
        .enumerate()
        .map(|(i, key)| KeyOut {
            key_id: key.id.clone(),
            scopes: key.scopes.names(),
            source: if i < configured { "config" } else { "database" },
        })
        .collect();
    Ok(HttpResponse::Ok().json(KeyList { results }))
}
