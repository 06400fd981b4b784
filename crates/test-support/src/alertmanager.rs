//! A real Prometheus Alertmanager for tests (Debian's `prometheus-alertmanager`, installed
//! by `make setup`), with a configuration of the test's own that routes everything, at
//! once and each incident apart, to one webhook receiver.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// The binary of Debian's package.
pub const BINARY: &str = "/usr/bin/prometheus-alertmanager";
/// Long enough for Alertmanager's start and its group waits.
pub const AM_T: Duration = Duration::from_secs(30);

/// A running Alertmanager with a configuration of the test's own; killed when dropped.
pub struct Alertmanager {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Alertmanager {
    /// `None` (skip) only with `LOGCANARY_SKIP_ALERTMANAGER=1`; a missing binary otherwise
    /// fails the test, so `make test` never passes without having run it.
    pub async fn start(receiver: &str) -> Option<Self> {
        if !Path::new(BINARY).exists() {
            if std::env::var("LOGCANARY_SKIP_ALERTMANAGER").as_deref() == Ok("1") {
                eprintln!("skipped: {BINARY} is missing and LOGCANARY_SKIP_ALERTMANAGER=1");
                return None;
            }
            panic!(
                "{BINARY} is missing: run `make setup` (it installs Debian's prometheus-alertmanager), \
                 or set LOGCANARY_SKIP_ALERTMANAGER=1 to skip this test"
            );
        }
        let dir = std::env::temp_dir().join(format!("logcanary-am-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("data")).expect("a temporary directory");
        // Everything to the test's receiver, each incident in a group of its own, at once;
        // no repeat while the test runs, so a re-post is never mistaken for a notification.
        let config = format!(
            "global:\n  resolve_timeout: 5m\n\
             route:\n  receiver: test\n  group_by: ['alertname', 'dedup_key']\n  \
             group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 4h\n\
             receivers:\n  - name: test\n    webhook_configs:\n      - url: '{receiver}'\n        send_resolved: true\n"
        );
        let file = dir.join("alertmanager.yml");
        std::fs::write(&file, config).expect("writing alertmanager.yml");
        let port = crate::free_port();
        let log = std::fs::File::create(dir.join("alertmanager.log")).expect("a log file");
        let child = Command::new(BINARY)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Empty: no cluster (no gossip port, no peers to wait for).
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus-alertmanager");
        let am = Self { child, port, dir };
        crate::wait_http_ok(&format!("{}/-/ready", am.url()), AM_T).await;
        Some(am)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("alertmanager.log")).unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
