use std::time::Duration;

use clap::Parser;
use logcanary_ingest_api::{config::Cli, startup::Application};
use serde_json::Value;
use test_support::TestDb;

/// A log shipper's key: `ingest` only.
pub const SHIPPER_KEY: &str = "shipper@ingest:shipper-secret";
/// A key that may only read.
pub const READER_KEY: &str = "reader@read:reader-secret";
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub address: String,
    pub admin: String,
    pub db: TestDb,
    pub prefix: String,
    pub client: reqwest::Client,
    /// The secret `post_signed` signs with, and whether it may use the legacy form.
    signing: (String, bool),
    shutdown: CancellationToken,
}

pub struct Options {
    /// Point the app at another database (e.g. a closed port) instead of the test's own.
    pub database_url: Option<String>,
    pub amqp_url: String,
    /// `--hmac-legacy`; `None` leaves the environment's default.
    pub legacy: Option<bool>,
    pub max_body_bytes: usize,
    /// `LOGCANARY_REPLAY_GUARD`: `postgres` or `memory`.
    pub replay_guard: &'static str,
    /// `LOGCANARY_HMAC_KEYS` instead of the test keys.
    pub hmac_keys: Option<String>,
    /// `LOGCANARY_DB_POOL_SIZE`, the write pool.
    pub db_pool_size: u32,
    /// More flags, e.g. `--environment=production`, `--read-token=...`.
    pub extra_args: Vec<String>,
    /// The secret `post_signed` signs with (default: the test key's).
    pub signing_secret: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            database_url: None,
            amqp_url: test_support::amqp_url(),
            legacy: Some(true),
            max_body_bytes: 1024 * 1024,
            replay_guard: "postgres",
            db_pool_size: 4,
            hmac_keys: None,
            extra_args: Vec::new(),
            signing_secret: None,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let db = TestDb::new().await;
    let prefix = test_support::queue_prefix();
    let hmac_keys = options.hmac_keys.clone().unwrap_or_else(|| {
        format!(
            "{},old:old-secret,{SHIPPER_KEY},{READER_KEY}",
            test_support::test_hmac_keys()
        )
    });
    let mut args = vec![
        "ingest-api".to_owned(),
        format!(
            "--database-url={}",
            options
                .database_url
                .clone()
                .unwrap_or_else(|| db.url.clone())
        ),
        format!("--amqp-url={}", options.amqp_url),
        format!("--amqp-prefix={prefix}"),
        "--http-addr=127.0.0.1:0".into(),
        "--admin-addr=127.0.0.1:0".into(),
        format!("--hmac-keys={hmac_keys}"),
        format!("--api-tokens={}", test_support::test_api_tokens()),
        format!("--max-body-bytes={}", options.max_body_bytes),
        format!("--replay-guard={}", options.replay_guard),
        "--http-workers=2".into(),
        format!("--db-pool-size={}", options.db_pool_size),
    ];
    if let Some(legacy) = options.legacy {
        args.push(format!("--hmac-legacy={legacy}"));
    }
    args.extend(options.extra_args.iter().cloned());
    let cli = Cli::try_parse_from(args).expect("test settings parse");
    let app = Application::build(cli.settings)
        .await
        .expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let admin = format!("http://127.0.0.1:{}", app.admin_port());
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        address,
        admin,
        db,
        prefix,
        signing: (
            options
                .signing_secret
                .clone()
                .unwrap_or_else(|| test_support::TEST_SECRET.to_owned()),
            options.legacy.unwrap_or(false),
        ),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client"),
        shutdown,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    /// POSTs a raw body with the given signature header (None: unsigned).
    pub async fn post_raw(
        &self,
        path: &str,
        body: &[u8],
        signature: Option<String>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}{path}", self.address))
            .header("Content-Type", "application/json")
            .body(body.to_vec());
        if let Some(sig) = signature {
            req = req.header("X-HMAC-Signature", sig);
        }
        req.send().await.expect("request sent")
    }

    /// POSTs JSON signed with the test key: legacy on the old API's POST endpoints (as
    /// the old clients do) where the app takes it, request-bound elsewhere.
    pub async fn post_signed(&self, path: &str, body: &Value) -> reqwest::Response {
        let bytes = serde_json::to_vec(body).expect("json");
        let (secret, legacy) = &self.signing;
        let sig = if *legacy && test_support::OLD_API_POSTS.contains(&path) {
            common::signing::sign_legacy(secret.as_bytes(), &bytes)
        } else {
            test_support::request_signature_with(secret.as_bytes(), "POST", path, &bytes)
        };
        self.post_raw(path, &bytes, Some(sig)).await
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request sent")
    }

    /// Rows stored: (log_entries, tasks).
    pub async fn counts(&self) -> (i64, i64) {
        (
            self.db.count("SELECT count(*) FROM log_entries").await,
            self.db.count("SELECT count(*) FROM tasks").await,
        )
    }

    /// Moves a stored entry `days` back in time (its `received_at`), as the earlier line of
    /// a quiet source.
    pub async fn move_entry_back(&self, id: i64, days: i32) {
        self.db
            .db
            .run(move |c| {
                use diesel::RunQueryDsl;
                diesel::sql_query(
                    "UPDATE log_entries SET received_at = now() - make_interval(days => $2) \
                     WHERE id = $1",
                )
                .bind::<diesel::sql_types::BigInt, _>(id)
                .bind::<diesel::sql_types::Integer, _>(days)
                .execute(c)?;
                Ok(())
            })
            .await
            .expect("entry moved back in time");
    }

    /// Messages waiting in one of this test's queues.
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        let conn = mq::connect(&test_support::amqp_url(), "test")
            .await
            .expect("broker");
        let channel = conn.create_channel().await.expect("channel");
        let topology = mq::Topology::new(self.prefix.clone());
        topology
            .declare(&channel)
            .await
            .expect("declaring the test topology");
        let depth = mq::queue_depth(&channel, &topology.queue(queue))
            .await
            .expect("queue depth");
        let _ = conn.close(200, "bye".into()).await;
        depth
    }

    /// Waits until a queue holds `n` messages: publishing happens just after the reply.
    pub async fn wait_queue_depth(&self, queue: &str, n: u32) {
        test_support::eventually(
            &format!("{n} message(s) in {queue}"),
            Duration::from_secs(10),
            || async { (self.queue_depth(queue).await == n).then_some(()) },
        )
        .await;
    }

    pub async fn cleanup(self) {
        test_support::delete_queues(&self.prefix).await;
    }
}

pub fn entry(severity: &str, message: &str) -> Value {
    serde_json::json!({
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "severity": severity,
        "message": message,
    })
}
