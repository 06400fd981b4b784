//! Answers for requests no handler takes, in the JSON shape of every other error: 404 for
//! an unknown path, 405 for a known path asked with another method.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

/// A resource at `path` that answers methods it has no route for with a JSON 405.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(|req: HttpRequest| async move {
        HttpResponse::MethodNotAllowed()
            .json(json!({"detail": format!("Method \"{}\" not allowed.", req.method())}))
    }))
}

/// The app's default service: no resource at this path.
pub async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(json!({"detail": "Not found."}))
}
