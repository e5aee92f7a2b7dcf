//! clawlink-api: the agent-facing front. `clawlink-api [serve]` serves; `migrate` applies
//! migrations; `seed-demo` creates the demo account for local runs; `make-admin <email>
//! [--revoke]` grants the admin role; `rotate-keys [--batch N]` re-seals every credential
//! under the active key; `catalog import|import-all|lint|trim-spec …` works on the provider
//! catalog (see `clawlink_openapi::cli`); `audit verify` checks the audit trail's hash
//! chains.

use clawlink_common::config::Env;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    clawlink_common::telemetry::init("info,clawlink_api=info");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env = Env::from_process();
    let result = match args.first().map(String::as_str) {
        None | Some("serve") => clawlink_api::serve(&env).await,
        Some("migrate") => clawlink_api::commands::migrate(&env).await,
        Some("seed-demo") => clawlink_api::commands::seed_demo(&env, &args[1..]).await,
        Some("make-admin") => clawlink_api::commands::make_admin(&env, &args[1..]).await,
        Some("rotate-keys") => clawlink_api::commands::rotate_keys(&env, &args[1..]).await,
        Some("catalog") => clawlink_api::commands::catalog(&args[1..]),
        Some("audit") => clawlink_api::commands::audit(&env, &args[1..]).await,
        Some(other) => Err(anyhow::anyhow!(
            "unknown command {other:?}; expected serve, migrate, seed-demo, make-admin, rotate-keys, catalog or audit"
        )),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("clawlink-api: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
