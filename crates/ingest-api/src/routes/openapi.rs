//! `GET /api/openapi.json`: the OpenAPI document of [`crate::openapi`].

use actix_web::{web, HttpResponse};

use crate::fallback::resource;

/// Registers the document's route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/openapi.json").route(web::get().to(openapi)));
}

/// This document.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::document())
}
