use anyhow::Context;
use clap::Parser;
use logcanary_ingest_api::{
    config::{Cli, Command},
    openapi,
    startup::Application,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    common::telemetry::init(cli.settings.service.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Openapi => {
            print!("{}", openapi::pretty());
            Ok(())
        }
        Command::Migrate => {
            let url = cli.settings.service.database_url().to_owned();
            let applied = tokio::task::spawn_blocking(move || db::migrate(&url))
                .await?
                .with_context(|| {
                    format!(
                        "migrating {}",
                        common::config::redact_url(cli.settings.service.database_url())
                    )
                })?;
            tracing::info!(applied = applied.len(), "Database is up to date.");
            Ok(())
        }
        Command::Serve => {
            let shutdown = common::shutdown::on_signal();
            let app = Application::build(cli.settings).await?;
            tracing::info!(
                port = app.port(),
                admin_port = app.admin_port(),
                "Ingest API listening."
            );
            app.run_until_stopped(shutdown).await
        }
    }
}
