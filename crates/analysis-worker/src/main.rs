use logcanary_analysis_worker::{config::Settings, run};
use mq::service::ConsumerSettings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load();
    common::telemetry::init(settings.service.log_format);
    let shutdown = common::shutdown::on_signal();
    run(settings, shutdown).await
}
