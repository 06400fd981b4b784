//! `GET /api/dashboard/`: anomaly counts, the severity mix of the last 24 h and the
//! latest anomalies, for the dashboard's header.

use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{access::ReadAccess, errors::ApiError, fallback::resource, rfc3339, state::AppState};

/// Registers the dashboard summary.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/dashboard/").route(web::get().to(dashboard)));
}

#[derive(Serialize, ToSchema)]
pub struct RecentAnomaly {
    id: i64,
    timestamp: String,
    severity: String,
    message: String,
    anomaly_score: Option<f64>,
    summary: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DashboardOut {
    anomalies_last_24h: i64,
    anomalies_last_7d: i64,
    severity_distribution_24h: std::collections::BTreeMap<String, i64>,
    recent_anomalies: Vec<RecentAnomaly>,
    last_updated: String,
}

/// Anomaly counts, the severity mix of the last 24 h and the latest anomalies.
#[utoipa::path(get, path = "/api/dashboard/", tag = "routes", responses((status = 200, body = DashboardOut)))]
pub async fn dashboard(
    _: ReadAccess,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let d = state
        .read_db
        .run(|c| db::dashboard::load(c, Utc::now(), 10))
        .await?;
    Ok(HttpResponse::Ok().json(DashboardOut {
        anomalies_last_24h: d.anomalies_last_24h,
        anomalies_last_7d: d.anomalies_last_7d,
        severity_distribution_24h: d.severity_distribution_24h,
        recent_anomalies: d
            .recent_anomalies
            .into_iter()
            .map(|e| RecentAnomaly {
                id: e.id,
                timestamp: rfc3339::format(e.logged_at),
                severity: e.severity,
                message: e.message,
                anomaly_score: e.anomaly_score,
                summary: e.summary,
            })
            .collect(),
        last_updated: rfc3339::format(d.last_updated),
    }))
}
