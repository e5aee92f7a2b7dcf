//! clawlink-worker: consumes tool calls from RabbitMQ and makes the provider calls.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    clawlink_common::telemetry::init("info,clawlink_worker=info");
    let env = clawlink_common::config::Env::from_process();
    match clawlink_worker::serve(&env).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("clawlink-worker: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
