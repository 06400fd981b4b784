//! The log shippers' endpoints under the same load as the batch endpoint: OTLP/HTTP
//! protobuf (`POST /v1/logs`, optionally gzip) and Loki push (`POST
//! /loki/api/v1/push`, snappy protobuf), `size` records per request, built per request from
//! the same lines as [`crate::entry`] (levels, messages and source alike), so the three
//! figures compare the endpoints and not the payloads.

use std::{
    io::Write,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use prost::Message;
use shippers::{
    loki::proto::{EntryAdapter, PushRequest, StreamAdapter},
    otlp::proto::{
        collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse},
        common::v1::{any_value, AnyValue, KeyValue},
        logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
        resource::v1::Resource,
    },
};

use crate::{entry, report_batches, SEQ};

/// Which protocol a run speaks.
#[derive(Clone, Copy, Debug)]
pub enum Protocol {
    Otlp { gzip: bool },
    Loki,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Otlp { gzip: false } => "otlp",
            Protocol::Otlp { gzip: true } => "otlp_gzip",
            Protocol::Loki => "loki",
        }
    }
}

/// `size` fresh lines: (unix ns, level, message).
fn lines(size: usize) -> Vec<(u64, String, String)> {
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
    (0..size)
        .map(|_| {
            let e = entry(SEQ.fetch_add(1, Ordering::Relaxed));
            let level = e["severity"].as_str().unwrap_or("INFO").to_owned();
            let message = e["message"].as_str().unwrap_or("").to_owned();
            (now, level, message)
        })
        .collect()
}

fn text(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.to_owned())),
    })
}

fn otlp_body(size: usize, gzip: bool) -> Vec<u8> {
    let records = lines(size)
        .into_iter()
        .map(|(at, level, message)| LogRecord {
            time_unix_nano: at,
            severity_number: match level.as_str() {
                "ERROR" => 17,
                "WARNING" => 13,
                _ => 9,
            },
            severity_text: level,
            body: text(&message),
            ..Default::default()
        })
        .collect();
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: text("bench"),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let bytes = request.encode_to_vec();
    if !gzip {
        return bytes;
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = gz.write_all(&bytes);
    gz.finish().unwrap_or_default()
}

fn loki_body(size: usize) -> Vec<u8> {
    // One stream per level, as a shipper labels them.
    let mut streams: Vec<StreamAdapter> = Vec::new();
    for (at, level, message) in lines(size) {
        let labels = format!(
            "{{service_name=\"bench\", level=\"{}\"}}",
            level.to_lowercase()
        );
        let entry = EntryAdapter {
            timestamp: Some(prost_types::Timestamp {
                seconds: (at / 1_000_000_000) as i64,
                nanos: (at % 1_000_000_000) as i32,
            }),
            line: message.into_bytes(),
            structured_metadata: vec![],
        };
        match streams.iter_mut().find(|s| s.labels == labels) {
            Some(stream) => stream.entries.push(entry),
            None => streams.push(StreamAdapter {
                labels,
                entries: vec![entry],
                hash: 0,
            }),
        }
    }
    let bytes = PushRequest { streams }.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&bytes)
        .unwrap_or_default()
}

/// Whether the answer means every record was taken.
async fn accepted(protocol: Protocol, response: reqwest::Response) -> bool {
    match protocol {
        Protocol::Loki => response.status().as_u16() == 204,
        Protocol::Otlp { .. } => {
            if response.status().as_u16() != 200 {
                return false;
            }
            let Ok(bytes) = response.bytes().await else {
                return false;
            };
            ExportLogsServiceResponse::decode(bytes).is_ok_and(|r| {
                r.partial_success
                    .is_none_or(|p| p.rejected_log_records == 0)
            })
        }
    }
}

/// Posts `size`-record requests over `concurrency` connections for `seconds`; prints one
/// JSON line like the batch run's.
pub async fn run(
    protocol: Protocol,
    url: String,
    token: String,
    size: usize,
    concurrency: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let endpoint = match protocol {
        Protocol::Otlp { .. } => format!("{url}/v1/logs"),
        Protocol::Loki => format!("{url}/loki/api/v1/push"),
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, endpoint, token) = (client.clone(), endpoint.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let (mut entries, mut errors, mut latencies) = (0usize, 0usize, Vec::new());
            while Instant::now() < deadline {
                let mut request = client
                    .post(&endpoint)
                    .bearer_auth(&token)
                    .header("Content-Type", "application/x-protobuf");
                let body = match protocol {
                    Protocol::Otlp { gzip } => {
                        if gzip {
                            request = request.header("Content-Encoding", "gzip");
                        }
                        otlp_body(size, gzip)
                    }
                    Protocol::Loki => loki_body(size),
                };
                let sent = Instant::now();
                let ok = match request.body(body).send().await {
                    Ok(r) => accepted(protocol, r).await,
                    Err(_) => false,
                };
                if ok {
                    entries += size;
                    latencies.push(sent.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            (entries, errors, latencies)
        }));
    }
    report_batches(protocol.name(), size, concurrency, start, tasks).await
}
