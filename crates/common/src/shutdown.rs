//! Turning SIGTERM / SIGINT into a cancellation token that every loop watches.

use tokio_util::sync::CancellationToken;

/// Returns a token that is cancelled on the first SIGTERM or SIGINT (Ctrl-C).
///
/// Kubernetes sends SIGTERM and waits `terminationGracePeriodSeconds`; every consumer
/// loop selects on this token, stops taking new work, finishes what it holds and exits 0.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("Shutdown signal received; draining in-flight work.");
        trigger.cancel();
    });
    token
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "Cannot listen for SIGTERM; only Ctrl-C will stop the process.");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
