//! What an operator sees when starting a binary: `--help` names the environment
//! variables, and a bad value stops the process at once, naming the variable.

use std::process::Command;

fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(test_support::bin_path(bin));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn help_lists_the_configuration_contract() {
    let (ok, text) = run("ingest-api", &["--help"], &[]);
    assert!(ok);
    for var in [
        "DATABASE_URL",
        "AMQP_URL",
        "LOGCANARY_HMAC_KEYS",
        "LOGCANARY_HMAC_LEGACY",
        "LOGCANARY_HTTP_ADDR",
        "LOGCANARY_ADMIN_ADDR",
        "LOGCANARY_LOG_FORMAT",
    ] {
        assert!(text.contains(var), "ingest-api --help lacks {var}");
    }
    assert!(text.contains("migrate"), "the migrate command is listed");
    let (ok, text) = run("analysis-worker", &["--help"], &[]);
    assert!(ok);
    for var in [
        "DATABASE_URL",
        "AMQP_URL",
        "LOGCANARY_QUEUES",
        "LOGCANARY_CONCURRENCY",
        "LOGCANARY_PREFETCH",
        "LOGCANARY_ADMIN_ADDR",
    ] {
        assert!(text.contains(var), "analysis-worker --help lacks {var}");
    }
}

#[test]
fn bad_settings_fail_fast_naming_the_variable() {
    let cases: [(&str, &str, &str); 5] = [
        ("ingest-api", "LOGCANARY_HTTP_ADDR", "not-an-address"),
        ("ingest-api", "LOGCANARY_HMAC_LEGACY", "perhaps"),
        ("ingest-api", "LOGCANARY_LOG_FORMAT", "xml"),
        ("analysis-worker", "LOGCANARY_QUEUES", "celery"),
        ("analysis-worker", "LOGCANARY_PREFETCH", "0"),
    ];
    for (bin, var, value) in cases {
        let (ok, text) = run(bin, &[], &[(var, value)]);
        assert!(!ok, "{bin} started with {var}={value}");
        assert!(
            text.contains(var),
            "{bin}: the error does not name {var}: {text}"
        );
    }
    let (ok, text) = run("ingest-api", &[], &[("LOGCANARY_ENV", "production")]);
    assert!(!ok);
    assert!(text.contains("LOGCANARY_HMAC_KEYS"), "{text}");
}

/// `ingest-api create-token`: the token is printed once and only its SHA-256 is stored;
/// `--no-store` prints the `LOGCANARY_API_TOKENS` entry instead; `revoke-token` retires it.
#[tokio::test]
async fn create_token_prints_the_token_once_and_stores_only_its_digest() {
    use sha2::Digest;
    let db = test_support::TestDb::new().await;
    let env = [("DATABASE_URL", db.url.as_str())];
    let (ok, out) = run(
        "ingest-api",
        &["create-token", "--name", "otel", "--scopes", "ingest+read"],
        &env,
    );
    assert!(ok, "{out}");
    let token = out
        .lines()
        .find(|l| l.starts_with("lc_"))
        .unwrap_or_else(|| panic!("a token in {out}"))
        .to_owned();
    assert_eq!(token.len(), 46, "lc_ and 256 bits: {token}");
    let digest = hex::encode(sha2::Sha256::digest(token.as_bytes()));
    let stored = db
        .count(&format!(
            "SELECT count(*) FROM api_tokens WHERE name = 'otel' AND encode(token_sha256, 'hex') = '{digest}' AND scopes = '{{ingest,read}}' AND revoked_at IS NULL"
        ))
        .await;
    assert_eq!(stored, 1, "the digest and scopes are stored");

    let (ok, out) = run(
        "ingest-api",
        &["create-token", "--name", "loki", "--no-store"],
        &env,
    );
    assert!(ok, "{out}");
    let entry = out
        .lines()
        .find_map(|l| l.strip_prefix("LOGCANARY_API_TOKENS entry: "))
        .unwrap_or_else(|| panic!("a configuration entry in {out}"));
    assert!(entry.starts_with("loki@ingest:"), "{entry}");
    assert_eq!(
        db.count("SELECT count(*) FROM api_tokens WHERE name = 'loki'")
            .await,
        0
    );

    let (ok, out) = run("ingest-api", &["revoke-token", "--name", "otel"], &env);
    assert!(ok, "{out}");
    let (ok, out) = run("ingest-api", &["revoke-token", "--name", "otel"], &env);
    assert!(!ok, "revoking twice says there is nothing to revoke: {out}");
    assert!(!out.contains(&token), "the token is never shown again");
}
