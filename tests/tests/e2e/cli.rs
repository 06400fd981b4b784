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
