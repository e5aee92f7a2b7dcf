//! `clawlink-emulator`: serves the provider emulator until SIGINT/SIGTERM.
//! Configured by `CLAWLINK_EMULATOR_ADDR`, `CLAWLINK_EMULATOR_SANDBOX_TOKENS` (accepted by
//! every provider), `CLAWLINK_CATALOG_DIR` and `CLAWLINK_EMULATOR_FIXTURES_DIR`. The sandbox
//! is served at the root and each catalog provider under `/<id>`, which is where
//! `CLAWLINK_PROVIDER_<ID>_BASE_URL` should point.

use std::io::IsTerminal;

use clawlink_emulator::{Emulator, EmulatorConfig, shutdown_signal};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_ansi(std::io::stdout().is_terminal())
        .init();

    let config = EmulatorConfig::from_env()?;
    let emulator = Emulator::start(config).await?;
    tracing::info!(url = %emulator.url(), providers = %emulator.provider_ids().join(","), "provider emulator listening");

    shutdown_signal().await;
    tracing::info!("shutting down");
    emulator.shutdown().await;
    Ok(())
}
