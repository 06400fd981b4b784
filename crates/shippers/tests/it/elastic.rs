use serde_json::{json, Value};
use shippers::elastic::{self, Action};
use shippers::DecodeError;

fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn index_and_create_items_become_entries() {
    let body = ndjson(&[
        json!({"index": {"_index": "filebeat-8.11", "_id": "a1"}}),
        json!({"@timestamp": "2023-11-14T22:13:20.123Z", "message": "user login", "log": {"level": "warn"},
               "service": {"name": "auth"}, "host": {"name": "h1"}, "user": {"id": 7}}),
        json!({"create": {"_index": "logs-app-default"}}),
        json!({"@timestamp": 1_700_000_000_123_i64, "event.original": "raw line", "host.hostname": "h2"}),
        json!({"create": {}}),
        json!({"log": {"original": "orig"}, "level": 3}),
    ]);

    let bulk = elastic::decode_bulk(body.as_bytes()).expect("valid bulk");

    assert_eq!(bulk.items.len(), 3);
    let first = &bulk.items[0];
    assert_eq!(
        (first.action, first.index.as_str(), first.id.as_deref()),
        (Action::Index, "filebeat-8.11", Some("a1"))
    );
    let entry = first.outcome.as_ref().expect("taken");
    assert_eq!(entry.message, "user login");
    assert_eq!(entry.severity, "WARNING");
    assert_eq!(entry.source.as_deref(), Some("auth"));
    assert_eq!(entry.timestamp.timestamp_millis(), 1_700_000_000_123);
    assert_eq!(entry.attributes["user"], json!({"id": 7}));
    assert!(
        !entry.attributes.contains_key("message") && !entry.attributes.contains_key("@timestamp")
    );
    let second = bulk.items[1].outcome.as_ref().expect("taken");
    assert_eq!(
        (second.message.as_str(), second.source.as_deref()),
        ("raw line", Some("h2"))
    );
    assert_eq!(second.timestamp.timestamp_millis(), 1_700_000_000_123);
    let third = &bulk.items[2];
    assert_eq!(
        (third.action, third.index.as_str(), third.id.as_deref()),
        (Action::Create, "", None)
    );
    let third = third.outcome.as_ref().expect("taken");
    assert_eq!(
        (
            third.message.as_str(),
            third.severity,
            third.source.as_deref()
        ),
        ("orig", "ERROR", None)
    );
}

#[test]
fn the_index_is_the_source_of_last_resort() {
    let body = ndjson(&[
        json!({"index": {"_index": "nginx-access"}}),
        json!({"message": "GET /"}),
    ]);
    let bulk = elastic::decode_bulk(body.as_bytes()).expect("valid bulk");
    assert_eq!(
        bulk.items[0]
            .outcome
            .as_ref()
            .expect("taken")
            .source
            .as_deref(),
        Some("nginx-access")
    );
    let bulk =
        elastic::decode_bulk_into(b"{\"index\":{}}\n{\"message\":\"x\"}\n", Some("from-path"))
            .expect("valid");
    assert_eq!(bulk.items[0].index, "from-path");
}

#[test]
fn delete_update_and_bad_sources_are_item_errors() {
    let body = [
        r#"{"delete": {"_index": "logs", "_id": "1"}}"#,
        r#"{"update": {"_index": "logs", "_id": "2"}}"#,
        r#"{"doc": {"message": "changed"}}"#,
        r#"{"index": {"_index": "logs"}}"#,
        r#"{"message": "unterminated"#,
        r#"{"index": {"_index": "logs"}}"#,
        r#"{"no_message": true}"#,
        r#"{"index": {"_index": "logs"}}"#,
        r#"["not", "an", "object"]"#,
        r#"{"index": {"_index": "logs", "_id": 17}}"#,
        r#"{"message": "fine"}"#,
    ]
    .join("\r\n");

    let bulk = elastic::decode_bulk(body.as_bytes()).expect("framing is fine");

    let actions: Vec<Action> = bulk.items.iter().map(|i| i.action).collect();
    assert_eq!(
        actions,
        [
            Action::Delete,
            Action::Update,
            Action::Index,
            Action::Index,
            Action::Index,
            Action::Index
        ]
    );
    let failed: Vec<bool> = bulk.items.iter().map(|i| i.outcome.is_err()).collect();
    assert_eq!(failed, [true, true, true, true, true, false]);
    assert_eq!(bulk.items[5].id.as_deref(), Some("17"));
    assert!(bulk.items[0]
        .outcome
        .as_ref()
        .expect_err("delete")
        .contains("not supported"));

    let stored = [None, None, None, None, None, Some(99)];
    let answer = elastic::bulk_response(&bulk, &stored, 12);

    assert_eq!(answer["took"], json!(12));
    assert_eq!(answer["errors"], json!(true));
    let items = answer["items"].as_array().expect("items");
    assert_eq!(items.len(), 6);
    assert_eq!(items[0]["delete"]["status"], json!(400));
    assert_eq!(
        items[0]["delete"]["error"]["type"],
        json!("illegal_argument_exception")
    );
    assert_eq!(items[2]["index"]["status"], json!(400));
    assert_eq!(
        items[2]["index"]["error"]["type"],
        json!("mapper_parsing_exception")
    );
    let ok = &items[5]["index"];
    assert_eq!(ok["status"], json!(201));
    assert_eq!(ok["result"], json!("created"));
    assert_eq!(ok["_id"], json!("17"));
    assert_eq!(ok["_index"], json!("logs"));
    assert_eq!(ok["_version"], json!(1));
    assert_eq!(ok["_seq_no"], json!(99));
    assert_eq!(ok["_primary_term"], json!(1));
    assert_eq!(
        ok["_shards"],
        json!({"total": 1, "successful": 1, "failed": 0})
    );
}

#[test]
fn a_clean_bulk_answers_errors_false_with_database_ids() {
    let body = "{\"create\":{\"_index\":\"a\"}}\n{\"message\":\"one\"}\n{\"create\":{\"_index\":\"a\"}}\n{\"message\":\"two\"}";
    let bulk = elastic::decode_bulk(body.as_bytes()).expect("no trailing newline is fine");
    assert_eq!(bulk.items.len(), 2);
    let answer = elastic::bulk_response(&bulk, &[Some(5), Some(6)], 3);
    assert_eq!(answer["errors"], json!(false));
    assert_eq!(answer["items"][0]["create"]["_id"], json!("5"));
    assert_eq!(answer["items"][1]["create"]["_id"], json!("6"));
    assert_eq!(answer["items"][1]["create"]["status"], json!(201));
}

#[test]
fn an_item_that_was_not_stored_is_answered_as_a_server_error() {
    let bulk = elastic::decode_bulk(b"{\"index\":{}}\n{\"message\":\"x\"}\n").expect("valid");
    let answer = elastic::bulk_response(&bulk, &[], 1);
    assert_eq!(answer["errors"], json!(true));
    assert_eq!(answer["items"][0]["index"]["status"], json!(500));
}

#[test]
fn broken_framing_fails_the_whole_request() {
    for body in [
        &b"not json\n{\"message\":\"x\"}\n"[..],
        b"{\"upsert\":{}}\n{\"message\":\"x\"}\n",
        b"{\"index\":{}}\n",
        b"{\"index\":{},\"create\":{}}\n{}\n",
        b"[1]\n",
    ] {
        match elastic::decode_bulk(body) {
            Err(DecodeError::Malformed(message)) => assert!(message.len() < 300, "{message}"),
            other => panic!(
                "expected Malformed for {:?}, got {other:?}",
                String::from_utf8_lossy(body)
            ),
        }
    }
    assert!(elastic::decode_bulk(b"")
        .expect("empty is valid")
        .items
        .is_empty());
    assert!(elastic::decode_bulk(b"\n\n")
        .expect("blank is valid")
        .items
        .is_empty());
}

#[test]
fn root_info_claims_an_8x_cluster() {
    let info = elastic::root_info();
    let number = info["version"]["number"].as_str().expect("version number");
    assert!(number.starts_with("8."), "{number}");
    assert_eq!(info["tagline"], json!("You Know, for Search"));
    assert_eq!(info["version"]["build_flavor"], json!("default"));
    assert_eq!(
        info["version"]["minimum_wire_compatibility_version"],
        json!("7.17.0")
    );
    assert_eq!(
        elastic::PRODUCT_HEADER,
        ("X-Elastic-Product", "Elasticsearch")
    );
}

#[test]
fn a_blank_message_falls_back_to_the_original_fields() {
    let body = ndjson(&[
        json!({"index": {}}),
        json!({"message": "  ", "event": {"original": "from event.original"}}),
        json!({"index": {}}),
        json!({"message": "", "log.original": null}),
    ]);
    let bulk = elastic::decode_bulk(body.as_bytes()).expect("valid bulk");
    assert_eq!(
        bulk.items[0].outcome.as_ref().expect("taken").message,
        "from event.original"
    );
    assert!(bulk.items[1]
        .outcome
        .as_ref()
        .expect_err("no text")
        .contains("no message"));
}
