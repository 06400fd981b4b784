//! Security issue 13, "tested from outside": schemathesis generates requests from the
//! API's own `GET /api/openapi.json` (valid and invalid parameters and bodies, every
//! operation) against the real `ingest-api` binary and checks that none answers a 5xx and
//! that every response matches the schema documented for its status code. Each request is
//! signed with a v2 signature of the test key (every scope) by `tests/schemathesis/hooks.py`,
//! so the handlers behind the authentication are reached, not just its 401s.
//!
//! schemathesis lives in `.cache/schemathesis-venv`, which `make test` (scripts/setup.sh)
//! creates through `scripts/fetch-validators.sh`.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use logcanary_e2e::Stack;

/// Test cases per operation and phase (`LOGCANARY_SCHEMATHESIS_EXAMPLES` overrides it for a
/// deeper run): enough to reach every documented answer of the 20 operations, few enough
/// for the run to take well under a minute on two shared cores.
const MAX_EXAMPLES: &str = "50";

/// A fixed seed, so a failure seen once is seen again on the next run
/// (`LOGCANARY_SCHEMATHESIS_SEED` picks another; `random` lets schemathesis pick one).
const SEED: &str = "13";

/// Stops a run that hangs (a request that never answers is a finding, not a wait).
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_response_off_the_schema() {
    let root = root();
    let schemathesis = root.join(".cache/schemathesis-venv/bin/schemathesis");
    assert!(
        schemathesis.exists(),
        "{} is missing: run `make test` (or `bash scripts/fetch-validators.sh`), which installs \
         the pinned schemathesis into .cache/schemathesis-venv",
        schemathesis.display()
    );
    let hooks = root.join("tests/schemathesis/hooks.py");
    assert!(hooks.exists(), "{} is missing", hooks.display());

    let stack = Stack::start_api(&[]).await;
    // schemathesis and hypothesis write their caches into the working directory.
    let workdir = std::env::temp_dir().join(format!("logcanary-schemathesis-{}", stack.prefix));
    std::fs::create_dir_all(&workdir).expect("a working directory for schemathesis");

    let examples =
        std::env::var("LOGCANARY_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| MAX_EXAMPLES.into());
    let seed = std::env::var("LOGCANARY_SCHEMATHESIS_SEED").unwrap_or_else(|_| SEED.into());
    let mut command = tokio::process::Command::new(&schemathesis);
    command
        .current_dir(&workdir)
        .env("SCHEMATHESIS_HOOKS", &hooks)
        .env("LOGCANARY_TEST_SECRET", test_support::TEST_SECRET)
        .env("LOGCANARY_TEST_KEY_ID", test_support::TEST_KEY_ID)
        .env("NO_COLOR", "1")
        .args([
            "run",
            &format!("{}/api/openapi.json", stack.api),
            // `signature_accepted` (hooks.py): no 401, so the signing works and the
            // handlers, not just the authentication, are what is being tested.
            "--checks",
            "not_a_server_error,response_schema_conformance,signature_accepted",
            "--max-examples",
            &examples,
            "--workers",
            "2",
            // The hook signs every request; generated X-HMAC-Signature or Authorization
            // values would only be overwritten or fail the bearer check first.
            "--generation-with-security-parameters",
            "false",
            "--generation-database",
            "none",
            "--request-timeout",
            "30",
            "--no-color",
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if seed != "random" {
        command.args(["--seed", &seed]);
    }
    let started = Instant::now();
    let run = command.output();
    let output = tokio::time::timeout(RUN_TIMEOUT, run).await;
    let elapsed = started.elapsed();
    stack.stop().await;
    let _ = std::fs::remove_dir_all(&workdir);

    let output = output
        .unwrap_or_else(|_| panic!("schemathesis did not finish within {RUN_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", schemathesis.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found problems ({}, after {elapsed:?}):\n{stdout}\n{stderr}",
        output.status
    );
    println!("schemathesis passed in {elapsed:?}:\n{stdout}");
}
