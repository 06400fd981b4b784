//! Test helpers (dev-only): a fresh database per test (a copy of a migrated template),
//! per-test broker names, signing, and spawning the real binaries on free ports.
//!
//! Everything talks to the real Postgres and RabbitMQ of the machine
//! (`TEST_DATABASE_SERVER` / `AMQP_URL` override the local defaults).

pub mod alertmanager;
pub mod smtp;
pub mod webhook;

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use diesel::{Connection, PgConnection, RunQueryDsl};

/// Runs `f` with the environment variables `vars` set, and removes them again after,
/// holding a process-wide lock: `cargo test` runs a binary's tests on threads of one
/// process, so a test that parses settings from the same variables takes [`env_lock`]
/// and never sees these values. (Under nextest every test has a process of its own.)
pub fn with_env<T>(vars: &[(&str, &str)], f: impl FnOnce() -> T) -> T {
    let _guard = env_lock();
    for (name, value) in vars {
        std::env::set_var(name, value);
    }
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    for (name, _) in vars {
        std::env::remove_var(name);
    }
    match out {
        Ok(out) => out,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The password-bearing URLs every service reads, with `s3cret` in each password.
pub const SERVICE_SECRETS: [(&str, &str); 2] = [
    ("DATABASE_URL", "postgres://lc:pg-s3cret-1@db:5432/lc"),
    ("AMQP_URL", "amqp://lc:mq-s3cret-2@mq:5672/%2f"),
];

/// Asserts that `--help` names every variable of `secrets` and that neither it nor the
/// settings' `Debug` shows any value containing `marker`.
pub fn assert_secrets_hidden(secrets: &[(&str, &str)], marker: &str, help: &str, debug: &str) {
    for (var, _) in secrets {
        assert!(help.contains(var), "{var} is not in --help");
    }
    assert!(!help.contains(marker), "a secret is in --help: {help}");
    assert!(!debug.contains(marker), "a secret is in Debug: {debug}");
}

/// The lock [`with_env`] holds while its variables are set.
pub fn env_lock() -> std::sync::MutexGuard<'static, ()> {
    static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A test that panicked while holding it left the environment restored (see
    // `with_env`), so the lock stays usable.
    ENV.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Server URL (no database) used to create per-test databases.
pub fn postgres_server_url() -> String {
    std::env::var("TEST_DATABASE_SERVER")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// The URL of database `name` on the test server. On the default loopback server TLS is
/// off (`sslmode=disable`): with libpq's default (`prefer`) every connection is TLS, and a
/// process that exits while a pool thread still holds one can crash in OpenSSL's exit
/// handler (diesel-rs/diesel#3441, r2d2#137; OpenSSL 3 has no switch to turn the handler
/// off). A test process ends that way after its test passed; the services the binaries
/// are deployed against keep whatever `DATABASE_URL` says.
pub fn database_url(name: &str) -> String {
    match std::env::var("TEST_DATABASE_SERVER") {
        Ok(server) => format!("{server}/{name}"),
        Err(_) => format!("{}/{name}?sslmode=disable", postgres_server_url()),
    }
}

pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A migrated database of its own, dropped when the value is dropped.
///
/// The database is a copy (`CREATE DATABASE .. TEMPLATE`) of a template migrated once per
/// migrations content and day (see [`template_name`]), not migrated per test: the first
/// test process to need the template builds it under an advisory lock, every other one
/// (nextest runs each test in a process of its own, in parallel) waits for it and copies it.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub db: db::Db,
}

/// Hash of `crates/db/migrations/**`, computed by `build.rs`.
const MIGRATIONS_HASH: &str = env!("LOGCANARY_MIGRATIONS_HASH");

const TEMPLATE_PREFIX: &str = "logcanary_tmpl_";

/// How long a copy or a rename waits for other sessions to leave a database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(20);

/// The template for these migrations and the server's UTC day: `migrate` also creates the
/// daily `log_entries` partitions around today, so a template from another day would hand
/// out other partitions than a fresh migration does.
fn template_name(admin: &mut PgConnection) -> String {
    #[derive(diesel::QueryableByName)]
    struct Day {
        #[diesel(sql_type = diesel::sql_types::Text)]
        day: String,
    }
    let day: Vec<Day> =
        diesel::sql_query("SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYYMMDD') AS day")
            .load(admin)
            .expect("reading the server's date");
    format!("{TEMPLATE_PREFIX}{MIGRATIONS_HASH}_{}", day[0].day)
}

fn database_exists(admin: &mut PgConnection, name: &str) -> bool {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let rows: Vec<N> =
        diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
            .bind::<diesel::sql_types::Text, _>(name)
            .load(admin)
            .expect("reading pg_database");
    rows[0].n > 0
}

/// Runs `sql`, retrying while Postgres says another session is in the database it copies
/// or renames (autovacuum, or the backend of a connection just closed still exiting).
fn execute_when_free(admin: &mut PgConnection, sql: &str) {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match diesel::sql_query(sql).execute(admin) {
            Ok(_) => return,
            Err(diesel::result::Error::DatabaseError(_, info))
                if info.message().contains("is being accessed by other users")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{sql}: {e}"),
        }
    }
}

/// Makes sure the migrated template exists and returns its name. Blocking.
fn ensure_template(admin: &mut PgConnection) -> String {
    let template = template_name(admin);
    if database_exists(admin, &template) {
        return template;
    }
    // Advisory locks are per database: every test process takes this one in `postgres`.
    let key = u64::from_str_radix(MIGRATIONS_HASH, 16).expect("a hex hash") as i64;
    diesel::sql_query(format!("SELECT pg_advisory_lock({key})"))
        .execute(admin)
        .expect("taking the template lock");
    if !database_exists(admin, &template) {
        // Built under another name and renamed when complete, so that a template that
        // exists is always fully migrated (a process killed half-way leaves `_build`).
        let build = format!("{template}_build");
        diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{build}\" WITH (FORCE)"))
            .execute(admin)
            .expect("dropping a half-built template");
        diesel::sql_query(format!("CREATE DATABASE \"{build}\""))
            .execute(admin)
            .expect("creating the template database");
        // Its only connection is closed when it returns.
        db::migrate(&database_url(&build)).expect("migrating the template database");
        execute_when_free(
            admin,
            &format!("ALTER DATABASE \"{build}\" RENAME TO \"{template}\""),
        );
        // Nobody connects to the template from now on, so copies never wait for a session.
        diesel::sql_query(format!(
            "ALTER DATABASE \"{template}\" ALLOW_CONNECTIONS false"
        ))
        .execute(admin)
        .expect("closing the template to connections");
        drop_old_templates(admin);
    }
    diesel::sql_query(format!("SELECT pg_advisory_unlock({key})"))
        .execute(admin)
        .expect("releasing the template lock");
    template
}

/// Best effort: drops templates of days before yesterday (any migrations). Those of today
/// and yesterday stay, whatever their hash: a run of another checkout may be copying them.
fn drop_old_templates(admin: &mut PgConnection) {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let old: Vec<Name> = diesel::sql_query(
        "SELECT datname::text AS datname FROM pg_database \
         WHERE datname ~ '^logcanary_tmpl_[0-9a-f]{16}_[0-9]{8}$' \
           AND right(datname, 8) < to_char((now() AT TIME ZONE 'UTC')::date - 1, 'YYYYMMDD')",
    )
    .load(admin)
    .unwrap_or_default();
    for Name { datname } in old {
        let _ = diesel::sql_query(format!(
            "DROP DATABASE IF EXISTS \"{datname}\" WITH (FORCE)"
        ))
        .execute(admin);
    }
}

impl TestDb {
    pub async fn new() -> Self {
        let name = format!("logcanary_test_{}", uuid::Uuid::new_v4().simple());
        let url = database_url(&name);
        let n = name.clone();
        tokio::task::spawn_blocking(move || {
            let mut admin = PgConnection::establish(&database_url("postgres"))
                .expect("connecting to the test Postgres server (TEST_DATABASE_SERVER)");
            let template = ensure_template(&mut admin);
            execute_when_free(
                &mut admin,
                &format!("CREATE DATABASE \"{n}\" TEMPLATE \"{template}\""),
            );
        })
        .await
        .expect("creating the test database");
        let db = db::Db::connect_lazy(&url, 8).expect("pool for the test database");
        Self { name, url, db }
    }

    /// Runs a scalar SQL count, e.g. `count("SELECT count(*) FROM tasks")`.
    pub async fn count(&self, sql: &str) -> i64 {
        let sql = sql.to_owned();
        self.db
            .run(move |c| {
                #[derive(diesel::QueryableByName)]
                struct N {
                    #[diesel(sql_type = diesel::sql_types::BigInt)]
                    n: i64,
                }
                let rows: Vec<N> =
                    diesel::sql_query(format!("SELECT ({sql})::bigint AS n")).load(c)?;
                Ok(rows.first().map_or(0, |r| r.n))
            })
            .await
            .expect("count query")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Best effort: a leftover test database is harmless.
        let _ = std::thread::spawn(move || {
            if let Ok(mut admin) = PgConnection::establish(&database_url("postgres")) {
                let _ =
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .execute(&mut admin);
            }
        })
        .join();
    }
}

/// A broker name prefix of its own (`t<uuid>.`), so tests never see each other's queues.
pub fn queue_prefix() -> String {
    format!("t{}.", uuid::Uuid::new_v4().simple())
}

/// Deletes every queue and exchange of a test prefix.
pub async fn delete_queues(prefix: &str) {
    let topology = mq::Topology::new(prefix);
    if let Ok(conn) = mq::connect(&amqp_url(), "test-cleanup").await {
        if let Ok(channel) = conn.create_channel().await {
            let _ = topology.delete(&channel).await;
        }
        let _ = conn.close(200, "bye".into()).await;
    }
}

/// A free TCP port on loopback, for a child process to bind.
///
/// Taken at random from below the kernel's ephemeral range (32768-60999 on Linux), not from
/// port 0: a port the kernel hands out as ephemeral is released when the probe closes and can
/// be given at once to one of the many outgoing connections (Postgres, RabbitMQ, HTTP) the
/// parallel tests open, and the child's bind then fails ("address in use"; seen in CI).
/// Below that range only another test's child can take it, and the random draw over 12 000
/// ports makes two concurrent tests picking the same one unlikely; the port is checked free.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    for attempt in 0u32..1_000 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.write_u32(attempt);
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        let port = LOW + (hasher.finish() % u64::from(SPAN)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between {LOW} and {}", LOW + SPAN)
}

pub const TEST_KEY_ID: &str = "test";
pub const TEST_SECRET: &str = "test-secret";

/// Headers for a legacy (plain hex) signature.
pub fn legacy_signature(body: &[u8]) -> String {
    common::signing::sign_legacy(TEST_SECRET.as_bytes(), body)
}

/// A fresh timestamped signature.
pub fn timestamped_signature(body: &[u8]) -> String {
    common::signing::sign_timestamped(TEST_SECRET.as_bytes(), chrono::Utc::now().timestamp(), body)
}

/// A fresh request-bound (`v2`) signature of `method` on `path_and_query` (the query, if
/// any, after `?`) with `body`, by the test key.
pub fn request_signature(method: &str, path_and_query: &str, body: &[u8]) -> String {
    request_signature_with(TEST_SECRET.as_bytes(), method, path_and_query, body)
}

/// [`request_signature`] with another secret. The same request signed again in this
/// process gets a later timestamp than the last time (the current second, or the one
/// after the last used), so a test sending one request twice is not refused as a replay,
/// as two real requests a second apart would not be.
pub fn request_signature_with(
    secret: &[u8],
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> String {
    use std::{
        collections::HashMap,
        hash::{Hash, Hasher},
        sync::Mutex,
    };
    static LAST: Mutex<Option<HashMap<u64, i64>>> = Mutex::new(None);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (secret, method, path_and_query, body).hash(&mut hasher);
    let key = hasher.finish();
    let now = chrono::Utc::now().timestamp();
    let t = {
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        let map = last.get_or_insert_with(HashMap::new);
        let t = map.get(&key).map_or(now, |&prev| now.max(prev + 1));
        map.insert(key, t);
        t
    };
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    common::signing::sign_request(
        secret,
        t,
        common::signing::RequestLine {
            method,
            path,
            query,
        },
        body,
    )
}

/// The old API's POST endpoints, where the old clients' body-only signatures still work.
pub const OLD_API_POSTS: [&str; 4] = [
    "/api/logs/",
    "/api/batch-analysis/",
    "/api/pattern-analysis/",
    "/api/real-time-analysis/",
];

/// `LOGCANARY_HMAC_KEYS` of the tests: the test key with every scope.
pub fn test_hmac_keys() -> String {
    format!("{TEST_KEY_ID}@ingest+read+operate+admin:{TEST_SECRET}")
}

/// The API token of the tests' log shipper (`ingest` only).
pub const SHIPPER_TOKEN: &str = "lc_test-shipper-token-with-ingest-scope";
/// An API token with `read` only: a shipper request with it answers 403.
pub const READ_ONLY_TOKEN: &str = "lc_test-reader-token-with-read-scope";

/// `LOGCANARY_API_TOKENS` of the tests: [`SHIPPER_TOKEN`] (`shipper@ingest`) and
/// [`READ_ONLY_TOKEN`] (`reader@read`), as the digests the setting takes.
pub fn test_api_tokens() -> String {
    use sha2::Digest;
    let hash = |t: &str| hex::encode(sha2::Sha256::digest(t.as_bytes()));
    format!(
        "shipper@ingest:{},reader@read:{}",
        hash(SHIPPER_TOKEN),
        hash(READ_ONLY_TOKEN)
    )
}

/// Where cargo put this workspace's binaries (next to the test executable's `deps/`).
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executables live in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --bins`, which `make test` does)",
        path.display()
    );
    path
}

/// A real binary running as a child process; SIGTERM + wait on drop.
pub struct Spawned {
    pub child: Child,
    pub name: String,
}

impl Spawned {
    /// Starts `name` with `env`, and waits until `http://127.0.0.1:{admin_port}/livez` answers.
    pub async fn start(name: &str, args: &[&str], env: &[(&str, String)], admin_port: u16) -> Self {
        Self::try_start(name, args, env, admin_port)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts `name` on `ports` fresh ports from [`free_port`] (at least one): `env_for`
    /// gives its environment for them, and the first is its admin port. A port checked free
    /// can still be taken by another test's child before this one binds it ("address in
    /// use", seen in CI), so when the child exits before answering it is started again on
    /// other ports, three times in all. Returns it and its ports.
    pub async fn start_on_free_ports(
        name: &str,
        args: &[&str],
        ports: usize,
        env_for: impl Fn(&[u16]) -> Vec<(&'static str, String)>,
    ) -> (Self, Vec<u16>) {
        let mut failure = String::new();
        for _ in 0..3 {
            let chosen: Vec<u16> = (0..ports.max(1)).map(|_| free_port()).collect();
            match Self::try_start(name, args, &env_for(&chosen), chosen[0]).await {
                Ok(spawned) => return (spawned, chosen),
                Err(e) => failure = e,
            }
        }
        panic!("{failure} (three times, on other ports each time)")
    }

    /// [`Spawned::start`], with an `Err` when the child exits before answering.
    async fn try_start(
        name: &str,
        args: &[&str],
        env: &[(&str, String)],
        admin_port: u16,
    ) -> Result<Self, String> {
        let mut cmd = Command::new(bin_path(name));
        cmd.args(args)
            .env("LOGCANARY_LOG_FORMAT", "json")
            .env(
                "RUST_LOG",
                std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let mut spawned = Self {
            child,
            name: name.to_owned(),
        };
        let url = format!("http://127.0.0.1:{admin_port}/livez");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(spawned);
                }
            }
            // A child that exited (a bad setting, a port in use) will never answer: say so now.
            if let Ok(Some(status)) = spawned.child.try_wait() {
                return Err(format!(
                    "{name} exited with {status} before {url} answered (its stderr is above)"
                ));
            }
            assert!(Instant::now() < deadline, "{url} did not answer within 30s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().expect("waiting for a killed child");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `url` until it answers 2xx.
pub async fn wait_http_ok(url: &str, timeout: Duration) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
