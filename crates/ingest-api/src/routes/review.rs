//! `GET /api/review/`: the review queue (ranked and cached by [`crate::review`]).

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    access::ReadAccess,
    errors::{ApiError, BadRequestBody, ErrorBody},
    fallback::resource,
    pagination,
    query::QueryCheck,
    review::{rank, ReviewItemOut, MAX_CANDIDATES},
    state::AppState,
};

/// Registers the review queue.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/review/").route(web::get().to(review_queue)));
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReviewQuery {
    /// Window of recent lines, in hours: 1 to 720 (default 24).
    hours: Option<String>,
    /// Templates returned, 1 to 200 (default 20).
    limit: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ReviewPage {
    /// Highest priority first.
    results: Vec<ReviewItemOut>,
    /// The window the lines were counted in.
    hours: i32,
}

/// The review queue: unlabelled templates ranked by how many verdicts an operator's
/// answer would change (uncertain, frequent and severe first).
#[utoipa::path(get, path = "/api/review/", params(ReviewQuery), tag = "crate::review",
    responses((status = 200, body = ReviewPage), (status = 400, body = BadRequestBody),
        (status = 401, body = ErrorBody)))]
pub async fn review_queue(
    _: ReadAccess,
    query: web::Query<ReviewQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut check = QueryCheck::new();
    let hours = check.int("hours", query.hours.as_deref(), 1..=720, 24);
    let limit = check.int("limit", query.limit.as_deref(), 1..=200, 20);
    check.finish()?;
    if let Some(results) = state.review_cache.get((hours, limit)) {
        return Ok(HttpResponse::Ok().json(ReviewPage { results, hours }));
    }
    let candidates = state
        .read_db
        .run(move |c| db::templates::review_candidates(c, hours, MAX_CANDIDATES))
        .await?;
    let mut results = rank(
        candidates,
        state.anomaly_threshold,
        usize::try_from(limit).unwrap_or(20),
    );
    // The highest priorities that fit the byte budget; the rest wait for the next answer.
    let fit = pagination::fitting(
        &results,
        pagination::MAX_PAGE_BYTES,
        ReviewItemOut::text_bytes,
    );
    results.truncate(fit);
    state.review_cache.put((hours, limit), results.clone());
    Ok(HttpResponse::Ok().json(ReviewPage { results, hours }))
}
