//! End-to-end tests across the real binaries (`tests/e2e/`), and the stack they run:
//! the `ingest-api` and `analysis-worker` executables as child processes, a database and
//! broker names of the test's own.

use std::time::Duration;

use serde_json::Value;
use test_support::{Spawned, TestDb};

pub struct Stack {
    pub db: TestDb,
    pub prefix: String,
    pub api: String,
    pub api_admin: String,
    pub client: reqwest::Client,
    pub ingest: Spawned,
    pub worker: Option<Spawned>,
    pub worker_admin_port: u16,
    pub worker_args: Vec<(&'static str, String)>,
}

impl Stack {
    /// Starts the API and one worker. `worker_env` adds or overrides worker settings.
    pub async fn start(worker_env: &[(&'static str, &str)]) -> Self {
        let mut stack = Self::start_api(worker_env).await;
        stack.start_worker().await;
        stack
    }

    /// Starts the API only; [`Stack::start_worker`] starts a worker later.
    pub async fn start_api(worker_env: &[(&'static str, &str)]) -> Self {
        let db = TestDb::new().await;
        let prefix = test_support::queue_prefix();
        let common = vec![
            ("DATABASE_URL", db.url.clone()),
            ("AMQP_URL", test_support::amqp_url()),
            ("LOGCANARY_AMQP_PREFIX", prefix.clone()),
            ("LOGCANARY_DB_POOL_SIZE", "4".to_owned()),
        ];
        let (ingest, ports) = Spawned::start_on_free_ports("ingest-api", &[], 2, |ports| {
            let mut api_env = common.clone();
            api_env.extend([
                ("LOGCANARY_ADMIN_ADDR", format!("127.0.0.1:{}", ports[0])),
                ("LOGCANARY_HTTP_ADDR", format!("127.0.0.1:{}", ports[1])),
                ("LOGCANARY_HMAC_KEYS", test_support::test_hmac_keys()),
                ("LOGCANARY_API_TOKENS", test_support::test_api_tokens()),
                ("LOGCANARY_HTTP_WORKERS", "2".to_owned()),
            ]);
            api_env
        })
        .await;
        let (api_admin_port, api_port) = (ports[0], ports[1]);
        let mut worker_args = common;
        worker_args.push(("LOGCANARY_RETRY_BASE_MS", "100".to_owned()));
        worker_args.push(("LOGCANARY_RETRY_MAX_MS", "400".to_owned()));
        // A short warm-up so a handful of lines is enough to flag something, and templates
        // and labels pulled before every batch so feedback applies to the next line.
        worker_args.push(("LOGCANARY_WARMUP_LINES", "3".to_owned()));
        worker_args.push(("LOGCANARY_TEMPLATE_REFRESH_MS", "0".to_owned()));
        for (k, v) in worker_env {
            worker_args.retain(|(key, _)| key != k);
            worker_args.push((k, (*v).to_owned()));
        }
        Self {
            db,
            prefix,
            api: format!("http://127.0.0.1:{api_port}"),
            api_admin: format!("http://127.0.0.1:{api_admin_port}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            ingest,
            worker: None,
            worker_admin_port: 0,
            worker_args,
        }
    }

    /// Starts (another) analysis worker process.
    pub async fn start_worker(&mut self) {
        let (worker, ports) = Spawned::start_on_free_ports("analysis-worker", &[], 1, |ports| {
            let mut env = self.worker_args.clone();
            env.push(("LOGCANARY_ADMIN_ADDR", format!("127.0.0.1:{}", ports[0])));
            env
        })
        .await;
        self.worker = Some(worker);
        self.worker_admin_port = ports[0];
    }

    /// Starts a realtime-worker process with the workers' settings plus `env`; returns it
    /// and its admin port.
    pub async fn spawn_realtime_worker(&self, env: &[(&'static str, &str)]) -> (Spawned, u16) {
        let (worker, ports) = Spawned::start_on_free_ports("realtime-worker", &[], 1, |ports| {
            let mut vars = self.worker_args.clone();
            for (k, v) in env {
                vars.retain(|(key, _)| key != k);
                vars.push((k, (*v).to_owned()));
            }
            vars.push(("LOGCANARY_ADMIN_ADDR", format!("127.0.0.1:{}", ports[0])));
            vars
        })
        .await;
        (worker, ports[0])
    }

    /// What every service binary of this stack needs: its database, broker names and a
    /// small pool, with its admin (health, metrics) port.
    fn service_env(&self, admin_port: u16) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", self.db.url.clone()),
            ("AMQP_URL", test_support::amqp_url()),
            ("LOGCANARY_AMQP_PREFIX", self.prefix.clone()),
            ("LOGCANARY_DB_POOL_SIZE", "4".to_owned()),
            ("LOGCANARY_ADMIN_ADDR", format!("127.0.0.1:{admin_port}")),
        ]
    }

    /// Starts a `notifier` process on this stack's database and broker names; `env` adds
    /// its settings (SMTP, webhooks, timings). The caller owns (and stops) the process.
    pub async fn start_notifier(&self, env: &[(&'static str, String)]) -> Spawned {
        Spawned::start_on_free_ports("notifier", &[], 1, |ports| {
            let mut all = self.service_env(ports[0]);
            all.extend(env.iter().cloned());
            all
        })
        .await
        .0
    }

    /// Spawns a scheduler on this stack's database and broker names; returns it with its
    /// admin port. `env` adds or overrides settings (e.g. a short tick).
    pub async fn spawn_scheduler(&self, env: &[(&'static str, &str)]) -> (Spawned, u16) {
        let (scheduler, ports) = Spawned::start_on_free_ports("scheduler", &[], 1, |ports| {
            let mut vars = self.service_env(ports[0]);
            vars.push(("LOGCANARY_SCHEDULER_TICK_MS", "100".to_owned()));
            for (k, v) in env {
                vars.retain(|(key, _)| key != k);
                vars.push((k, (*v).to_owned()));
            }
            vars
        })
        .await;
        (scheduler, ports[0])
    }

    pub async fn post_signed(&self, path: &str, body: &Value) -> (u16, Value) {
        let bytes = serde_json::to_vec(body).expect("json");
        let resp = self
            .client
            .post(format!("{}{path}", self.api))
            .header("Content-Type", "application/json")
            .header(
                "X-HMAC-Signature",
                test_support::request_signature("POST", path, &bytes),
            )
            .body(bytes)
            .send()
            .await
            .expect("POST sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Value {
        self.client
            .get(format!("{}{path}", self.api))
            .send()
            .await
            .expect("GET sent")
            .json()
            .await
            .expect("JSON body")
    }

    /// Waits until the task reaches `status` and returns its task-status document.
    pub async fn wait_task(&self, task_id: &str, status: &str, timeout: Duration) -> Value {
        test_support::eventually(
            &format!("task {task_id} to reach {status}"),
            timeout,
            || async {
                let t = self.get(&format!("/api/task-status/{task_id}/")).await;
                (t["status"] == status).then_some(t)
            },
        )
        .await
    }

    pub async fn queue_depth(&self, full_name: &str) -> u32 {
        let conn = mq::connect(&test_support::amqp_url(), "e2e-test")
            .await
            .expect("broker");
        let channel = conn.create_channel().await.expect("channel");
        let depth = mq::queue_depth(&channel, full_name).await.unwrap_or(0);
        let _ = conn.close(200, "bye".into()).await;
        depth
    }

    pub fn topology(&self) -> mq::Topology {
        mq::Topology::new(self.prefix.clone())
    }

    pub async fn stop(mut self) {
        if let Some(mut w) = self.worker.take() {
            w.terminate();
        }
        self.ingest.terminate();
        test_support::delete_queues(&self.prefix).await;
    }
}

pub fn entry_now(severity: &str, message: &str) -> Value {
    serde_json::json!({
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "severity": severity,
        "message": message,
        "source": "e2e",
    })
}
