//! What log shippers speak, beside our own JSON: OTLP/HTTP logs (`POST /v1/logs`), Loki
//! push (`POST /loki/api/v1/push`) and Elasticsearch bulk (`POST|PUT /_bulk`,
//! `/{index}/_bulk`, and the `GET /` answer Beats and the clients check). Each takes an
//! API token with the `ingest` scope ([`crate::shipper`]); the lines are stored and
//! queued like a batch, and the answer has the shape that protocol's clients expect, so
//! their retry logic works: the OTLP `Status` and partial success, Loki's 204 or a text
//! 400, Elasticsearch's per-item results with `X-Elastic-Product`.

use std::time::Instant;

use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse, ResponseError,
};
use shippers::{elastic, loki, otlp, Format};

use crate::{
    errors::ApiError,
    fallback::resource,
    shipper::{decode_error, read_shipped, shipper_caller, store},
};

/// Registers the shipper routes. `GET /` is shared with the dashboard page
/// ([`crate::routes::page`]), which answers the Elasticsearch root document to clients
/// that do not ask for HTML.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/logs").route(web::post().to(otlp_logs)))
        .service(resource("/loki/api/v1/push").route(web::post().to(loki_push)))
        .service(
            resource("/_bulk")
                .route(web::post().to(elastic_bulk))
                .route(web::put().to(elastic_bulk)),
        )
        .service(
            resource("/{index}/_bulk")
                .route(web::post().to(elastic_bulk))
                .route(web::put().to(elastic_bulk)),
        );
}

/// What a client may be told about a failure: the 5xx causes stay in our log.
fn public_message(error: &ApiError) -> String {
    match error {
        ApiError::Internal(_) => "Internal server error.".into(),
        ApiError::Unavailable(_) | ApiError::QueryTimeout(_) => {
            "Service temporarily unavailable, retry later.".into()
        }
        other => other.to_string(),
    }
}

fn content_type(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

fn otlp_mime(format: Format) -> &'static str {
    match format {
        Format::Protobuf => "application/x-protobuf",
        Format::Json => "application/json",
    }
}

/// OTLP/HTTP logs export: `ExportLogsServiceRequest` as protobuf or JSON, gzip allowed.
/// 200 with `ExportLogsServiceResponse` (its `partial_success` counting records refused,
/// say a line without a body); errors carry a `google.rpc.Status` in the request's format.
pub async fn otlp_logs(req: HttpRequest, payload: web::Payload) -> HttpResponse {
    // Answer in the request's format; JSON when it names none we know.
    let format = shippers::format_of(content_type(&req)).unwrap_or(Format::Json);
    match otlp_export(&req, payload).await {
        Ok((rejected, message)) => HttpResponse::Ok()
            .content_type(otlp_mime(format))
            .body(otlp::response(rejected, &message, format)),
        Err(error) => {
            let status = error.status_code();
            // gRPC codes of the OTLP spec: INVALID_ARGUMENT, UNAUTHENTICATED, ...
            let code = match status {
                StatusCode::UNAUTHORIZED => 16,
                StatusCode::FORBIDDEN => 7,
                StatusCode::PAYLOAD_TOO_LARGE => 8,
                StatusCode::SERVICE_UNAVAILABLE => 14,
                s if s.is_server_error() => 13,
                _ => 3,
            };
            let mut answer = error.error_response();
            let mut response = HttpResponse::build(status);
            if let Some(retry) = answer.headers_mut().remove(header::RETRY_AFTER).next() {
                response.insert_header((header::RETRY_AFTER, retry));
            }
            response.content_type(otlp_mime(format)).body(otlp::status(
                code,
                &public_message(&error),
                format,
            ))
        }
    }
}

async fn otlp_export(req: &HttpRequest, payload: web::Payload) -> Result<(i64, String), ApiError> {
    shipper_caller(req).await?;
    let format = shippers::format_of(content_type(req)).map_err(decode_error)?;
    let body = read_shipped(req, payload.into_inner()).await?;
    let decoded = otlp::decode(&body, format).map_err(decode_error)?;
    let rejected = decoded.rejected.len() as i64;
    let message = summarize_rejections("otlp", &decoded.rejected);
    store(req, "otlp", decoded.entries).await?;
    Ok((rejected, message))
}

/// "3 log records refused: record 2: ...; record 5: ..." (the first few), or empty; the
/// refusals are counted by protocol.
fn summarize_rejections(protocol: &'static str, rejected: &[shippers::Rejected]) -> String {
    if rejected.is_empty() {
        return String::new();
    }
    metrics::counter!("logcanary_shipper_records_refused_total", "protocol" => protocol)
        .increment(rejected.len() as u64);
    let first: Vec<String> = rejected
        .iter()
        .take(5)
        .map(|r| format!("record {}: {}", r.index, r.reason))
        .collect();
    let more = if rejected.len() > first.len() {
        format!("; and {} more", rejected.len() - first.len())
    } else {
        String::new()
    };
    format!(
        "{} log record(s) refused: {}{more}",
        rejected.len(),
        first.join("; ")
    )
}

/// Loki push: snappy-compressed `logproto.PushRequest` or the JSON form. 204 when every
/// line was taken; 400 with the reasons (as Loki answers) when some were refused, the
/// others stored.
pub async fn loki_push(req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let outcome = async {
        shipper_caller(&req).await?;
        let format = shippers::format_of(content_type(&req)).map_err(decode_error)?;
        let body = read_shipped(&req, payload.into_inner()).await?;
        let state = crate::access::app_state(&req)?;
        let decoded = loki::decode(&body, format, state.max_body_bytes).map_err(decode_error)?;
        let message = summarize_rejections("loki", &decoded.rejected);
        store(&req, "loki", decoded.entries).await?;
        Ok::<_, ApiError>(message)
    }
    .await;
    match outcome {
        Ok(message) if message.is_empty() => HttpResponse::NoContent().finish(),
        Ok(message) => HttpResponse::BadRequest()
            .content_type("text/plain; charset=utf-8")
            .body(message),
        Err(error) => {
            let mut response = error.error_response();
            let text = public_message(&error);
            let status = response.status();
            let retry = response.headers_mut().remove(header::RETRY_AFTER).next();
            let mut out = HttpResponse::build(status);
            if let Some(retry) = retry {
                out.insert_header((header::RETRY_AFTER, retry));
            }
            out.content_type("text/plain; charset=utf-8").body(text)
        }
    }
}

/// Elasticsearch bulk: NDJSON `index`/`create` actions, each with its document. 200 with
/// one result per action (`errors` true when any failed), as the clients' bulk helpers
/// read it; a request that cannot be read at all gets Elasticsearch's error shape.
pub async fn elastic_bulk(req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let started = Instant::now();
    let outcome = async {
        shipper_caller(&req).await?;
        let body = read_shipped(&req, payload.into_inner()).await?;
        let bulk = match req.match_info().get("index") {
            Some(index) => elastic::decode_bulk_into(&body, Some(index)),
            None => elastic::decode_bulk(&body),
        }
        .map_err(decode_error)?;
        let refused = bulk.items.iter().filter(|i| i.outcome.is_err()).count();
        if refused > 0 {
            metrics::counter!("logcanary_shipper_records_refused_total", "protocol" => "elasticsearch")
                .increment(refused as u64);
        }
        let stored: Vec<usize> = bulk
            .items
            .iter()
            .enumerate()
            .filter(|(_, i)| i.outcome.is_ok())
            .map(|(n, _)| n)
            .collect();
        let entries = bulk
            .items
            .iter()
            .filter_map(|i| i.outcome.as_ref().ok().cloned())
            .collect();
        let committed = store(&req, "elasticsearch", entries).await?;
        let mut ids = vec![None; bulk.items.len()];
        for (n, id) in stored.into_iter().zip(committed.entry_ids) {
            ids[n] = Some(id);
        }
        Ok::<_, ApiError>(elastic::bulk_response(
            &bulk,
            &ids,
            started.elapsed().as_millis() as u64,
        ))
    }
    .await;
    let (name, value) = elastic::PRODUCT_HEADER;
    match outcome {
        Ok(answer) => HttpResponse::Ok().insert_header((name, value)).json(answer),
        Err(error) => {
            let status = error.status_code();
            let kind = match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "security_exception",
                StatusCode::PAYLOAD_TOO_LARGE => "content_too_long_exception",
                s if s.is_server_error() => "unavailable_shards_exception",
                _ => "parse_exception",
            };
            let reason = public_message(&error);
            HttpResponse::build(status)
                .insert_header((name, value))
                .json(serde_json::json!({
                    "error": {
                        "root_cause": [{"type": kind, "reason": reason}],
                        "type": kind,
                        "reason": reason,
                    },
                    "status": status.as_u16(),
                }))
        }
    }
}

/// The Elasticsearch root document, with the product header.
pub fn elastic_root() -> HttpResponse {
    let (name, value) = elastic::PRODUCT_HEADER;
    HttpResponse::Ok()
        .insert_header((name, value))
        .json(elastic::root_info())
}
