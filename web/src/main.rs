//! clawlink-web: the browser plane.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    clawlink_common::telemetry::init("info");
    match clawlink_web::serve(&clawlink_common::config::Env::from_process()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("clawlink-web: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
