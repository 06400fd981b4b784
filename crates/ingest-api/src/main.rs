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
        Command::CreateToken {
            name,
            scopes,
            no_store,
        } => create_token(&cli.settings, &name, &scopes, no_store).await,
        Command::RevokeToken { name } => {
            let url = cli.settings.service.database_url().to_owned();
            let db = db::Db::connect_lazy(&url, 1)?;
            let who = name.clone();
            let revoked = db.run(move |c| db::api_tokens::revoke(c, &who)).await?;
            if revoked {
                println!("Revoked the API token {name:?}.");
                Ok(())
            } else {
                anyhow::bail!("No active API token is named {name:?}.")
            }
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

/// `ingest-api create-token`: a new token, its digest stored (or printed as the
/// `LOGCANARY_API_TOKENS` entry with `--no-store`), the token printed once.
async fn create_token(
    settings: &logcanary_ingest_api::config::Settings,
    name: &str,
    scopes: &str,
    no_store: bool,
) -> anyhow::Result<()> {
    use logcanary_ingest_api::{auth::Scopes, tokens};
    let parsed = Scopes::parse(scopes.split('+')).map_err(anyhow::Error::msg)?;
    if name.is_empty() || name.contains([',', ':', '@']) {
        anyhow::bail!("--name must be non-empty, without ',', ':' or '@'");
    }
    let token = tokens::generate();
    let sha = tokens::digest(&token);
    if no_store {
        println!("token: {token}");
        println!(
            "LOGCANARY_API_TOKENS entry: {name}@{}:{}",
            parsed.names().join("+"),
            hex::encode(sha)
        );
        return Ok(());
    }
    let db = db::Db::connect_lazy(settings.service.database_url(), 1)?;
    let (who, names) = (name.to_owned(), parsed.names());
    db.run(move |c| db::api_tokens::upsert(c, &who, &sha, &names))
        .await
        .context("storing the token digest in api_tokens (run `ingest-api migrate` first)")?;
    println!("{token}");
    eprintln!("Stored the SHA-256 of API token {name:?} with scopes {parsed}; the token is shown only this once.");
    Ok(())
}
