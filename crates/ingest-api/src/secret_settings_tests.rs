//! Every secret the ingest API is given, as a variable or a flag, stays out of `--help`
//! and of the settings' `Debug` (kept apart from `config` so the auth flags can change
//! there without touching it).

use clap::{CommandFactory, Parser};

use crate::config::Cli;

const SECRETS: [(&str, &str); 5] = [
    ("DATABASE_URL", "postgres://lc:pg-s3cret-1@db:5432/lc"),
    ("AMQP_URL", "amqp://lc:mq-s3cret-2@mq:5672/%2f"),
    ("LOGCANARY_HMAC_KEYS", "k1:hmac-s3cret-3"),
    ("LOGCANARY_READ_TOKEN", "read-s3cret-4"),
    ("LOGCANARY_DASHBOARD_TOKEN", "dash-s3cret-5"),
];

#[test]
fn secrets_never_show_in_help_or_debug() {
    let (help, debug) = test_support::with_env(&SECRETS, || {
        let help = Cli::command().render_long_help().to_string();
        let cli = Cli::try_parse_from(["ingest-api"]).expect("settings parse");
        assert_eq!(cli.settings.service.database_url(), SECRETS[0].1);
        assert_eq!(cli.settings.service.amqp_url(), SECRETS[1].1);
        assert!(cli.settings.hmac_keys.is_some() && cli.settings.read_token.is_some());
        (help, format!("{cli:?}"))
    });
    test_support::assert_secrets_hidden(&SECRETS, "s3cret", &help, &debug);

    let cli = Cli::try_parse_from([
        "ingest-api",
        "--database-url=postgres://lc:flag-s3cret@db/lc",
        "--amqp-url=amqp://lc:flag-s3cret@mq/%2f",
    ])
    .expect("settings parse");
    assert!(!format!("{cli:?}").contains("s3cret"));
}
