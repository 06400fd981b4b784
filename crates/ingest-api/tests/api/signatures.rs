use serde_json::Value;
use test_support::{TEST_KEY_ID, TEST_SECRET};

use crate::helpers::{entry, spawn_app, spawn_app_with, Options};

fn body() -> Vec<u8> {
    serde_json::to_vec(&entry("WARNING", "cache miss ratio above 0.9")).unwrap()
}

#[tokio::test]
async fn every_accepted_form_is_accepted() {
    let app = spawn_app().await;
    let b = body();
    let hex = common::signing::sign_legacy(TEST_SECRET.as_bytes(), &b);
    for sig in [
        hex.clone(),
        format!("sha256={hex}"),
        test_support::timestamped_signature(&b),
    ] {
        let resp = app.post_raw("/api/logs/", &b, Some(sig.clone())).await;
        assert_eq!(resp.status(), 201, "form {sig}");
    }
    // A second configured key, chosen by key id.
    let t = chrono::Utc::now().timestamp();
    let sig = common::signing::sign_timestamped(b"old-secret", t, &b);
    let resp = app
        .client
        .post(format!("{}/api/logs/", app.address))
        .header("Content-Type", "application/json")
        .header("X-HMAC-Signature", sig)
        .header("X-HMAC-Key-Id", "old")
        .body(b.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    // A key from the api_keys table (rotation without restart).
    app.db
        .db
        .run(|c| db::api_keys::upsert(c, "rotated", "from-the-table", true))
        .await
        .unwrap();
    // Keys added to the table are picked up within a second, without a restart.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let sig = common::signing::sign_legacy(b"from-the-table", &b);
    let resp = app
        .client
        .post(format!("{}/api/logs/", app.address))
        .header("Content-Type", "application/json")
        .header("X-HMAC-Signature", sig)
        .header("X-HMAC-Key-Id", "rotated")
        .body(b.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(app.counts().await, (5, 5));
    app.cleanup().await;
}

async fn assert_rejected(app: &crate::helpers::TestApp, resp: reqwest::Response, what: &str) {
    assert_eq!(resp.status(), 401, "{what}");
    let json: Value = resp.json().await.unwrap();
    assert!(json["detail"].is_string(), "{what}: {json}");
    assert_eq!(app.counts().await, (0, 0), "{what} stored something");
}

#[tokio::test]
async fn bad_signatures_are_401_and_store_nothing() {
    let app = spawn_app().await;
    let b = body();
    let now = chrono::Utc::now().timestamp();

    let resp = app.post_raw("/api/logs/", &b, None).await;
    assert_rejected(&app, resp, "unsigned").await;

    let resp = app
        .post_raw(
            "/api/logs/",
            &b,
            Some(common::signing::sign_legacy(b"wrong", &b)),
        )
        .await;
    assert_rejected(&app, resp, "wrong key").await;

    let resp = app.post_raw("/api/logs/", &b, Some("not-hex".into())).await;
    assert_rejected(&app, resp, "garbage header").await;

    let mut tampered = b.clone();
    let sig = test_support::legacy_signature(&b);
    tampered.extend_from_slice(b" ");
    let resp = app.post_raw("/api/logs/", &tampered, Some(sig)).await;
    assert_rejected(&app, resp, "tampered body").await;

    let stale = common::signing::sign_timestamped(TEST_SECRET.as_bytes(), now - 3600, &b);
    let resp = app.post_raw("/api/logs/", &b, Some(stale)).await;
    assert_rejected(&app, resp, "stale timestamp").await;

    let future = common::signing::sign_timestamped(TEST_SECRET.as_bytes(), now + 3600, &b);
    let resp = app.post_raw("/api/logs/", &b, Some(future)).await;
    assert_rejected(&app, resp, "timestamp in the future").await;

    let resp = app
        .client
        .post(format!("{}/api/logs/", app.address))
        .header("Content-Type", "application/json")
        .header("X-HMAC-Signature", test_support::legacy_signature(&b))
        .header("X-HMAC-Key-Id", "nobody")
        .body(b.clone())
        .send()
        .await
        .unwrap();
    assert_rejected(&app, resp, "unknown key id").await;

    // The right key under another key's id does not pass either.
    let resp = app
        .client
        .post(format!("{}/api/logs/", app.address))
        .header("Content-Type", "application/json")
        .header("X-HMAC-Signature", test_support::legacy_signature(&b))
        .header("X-HMAC-Key-Id", "old")
        .body(b.clone())
        .send()
        .await
        .unwrap();
    assert_rejected(&app, resp, "key id of another key").await;
    let _ = TEST_KEY_ID;

    // Replay: the same timestamped signature twice.
    let sig = test_support::timestamped_signature(&b);
    let first = app.post_raw("/api/logs/", &b, Some(sig.clone())).await;
    assert_eq!(first.status(), 201);
    let replay = app.post_raw("/api/logs/", &b, Some(sig)).await;
    assert_eq!(replay.status(), 401);
    let json: Value = replay.json().await.unwrap();
    assert!(
        json["detail"].as_str().unwrap().contains("replay"),
        "{json}"
    );
    assert_eq!(app.counts().await, (1, 1), "only the first was stored");
    app.cleanup().await;
}

#[tokio::test]
async fn a_replay_to_another_replica_is_refused_too() {
    let first = spawn_app().await;
    let shared = || Options {
        database_url: Some(first.db.url.clone()),
        ..Options::default()
    };
    let second = spawn_app_with(shared()).await;

    let b = body();
    let sig = test_support::timestamped_signature(&b);
    let accepted = first.post_raw("/api/logs/", &b, Some(sig.clone())).await;
    assert_eq!(accepted.status(), 201);
    let replay = second.post_raw("/api/logs/", &b, Some(sig.clone())).await;
    assert_eq!(replay.status(), 401);
    let json: Value = replay.json().await.unwrap();
    assert!(
        json["detail"].as_str().unwrap().contains("replay"),
        "{json}"
    );

    // The same new signature at both replicas at once: exactly one stores the entry.
    let b2 = serde_json::to_vec(&entry("ERROR", "raced")).unwrap();
    let raced = test_support::timestamped_signature(&b2);
    let (a, z) = tokio::join!(
        first.post_raw("/api/logs/", &b2, Some(raced.clone())),
        second.post_raw("/api/logs/", &b2, Some(raced)),
    );
    let mut statuses = [a.status().as_u16(), z.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 401]);
    assert_eq!(first.counts().await, (2, 2), "one entry per signature");
    assert_eq!(
        first
            .db
            .count("SELECT count(*) FROM used_signatures WHERE expires_at > now()")
            .await,
        2
    );

    // What LOGCANARY_REPLAY_GUARD=memory gives up: a replica that only remembers its own
    // signatures takes the replay (one replica only).
    let alone = spawn_app_with(Options {
        replay_guard: "memory",
        ..shared()
    })
    .await;
    let taken = alone.post_raw("/api/logs/", &b, Some(sig)).await;
    assert_eq!(taken.status(), 201);
    second.cleanup().await;
    alone.cleanup().await;
    first.cleanup().await;
}

#[tokio::test]
async fn legacy_signatures_can_be_switched_off() {
    let app = spawn_app_with(Options {
        legacy: Some(false),
        ..Options::default()
    })
    .await;
    let b = body();
    let resp = app
        .post_raw("/api/logs/", &b, Some(test_support::legacy_signature(&b)))
        .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(app.counts().await, (0, 0));
    let resp = app
        .post_raw(
            "/api/logs/",
            &b,
            Some(test_support::timestamped_signature(&b)),
        )
        .await;
    assert_eq!(resp.status(), 201);
    app.cleanup().await;
}

/// A request whose entries could not be stored (a 5xx) gives its timestamped signature
/// back: the client's retry of the very same request is stored, not refused as a replay.
#[tokio::test]
async fn a_failed_request_gives_its_signature_back_for_the_retry() {
    let app = spawn_app().await;
    let b = serde_json::to_vec(&entry("ERROR", "disk full on /var")).unwrap();
    let sig = test_support::timestamped_signature(&b);
    let exec = |sql: &'static str| {
        let db = app.db.db.clone();
        async move {
            db.run(move |c| {
                use diesel::RunQueryDsl;
                diesel::sql_query(sql).execute(c)?;
                Ok(())
            })
            .await
            .expect(sql);
        }
    };
    // The entries' table is gone for a moment: the commit fails.
    exec("ALTER TABLE log_entries RENAME TO log_entries_away").await;
    let failed = app.post_raw("/api/logs/", &b, Some(sig.clone())).await;
    assert!(failed.status().is_server_error(), "{}", failed.status());
    exec("ALTER TABLE log_entries_away RENAME TO log_entries").await;
    assert_eq!(
        app.db.count("SELECT count(*) FROM used_signatures").await,
        0,
        "the claim was given back"
    );

    let retried = app.post_raw("/api/logs/", &b, Some(sig.clone())).await;
    assert_eq!(retried.status(), 201, "the retry is stored");
    assert_eq!(app.counts().await, (1, 1));
    // And it is claimed now: a replay of it is refused.
    let replay = app.post_raw("/api/logs/", &b, Some(sig)).await;
    assert_eq!(replay.status(), 401);
    assert_eq!(app.counts().await, (1, 1));
    app.cleanup().await;
}
