//! High availability: a list of broker addresses, a three-node RabbitMQ cluster whose lane
//! leader is killed under load, a Postgres restart under load, a Redis replica promoted.
//! Every fault lands on a private server of the test's own (`chaos_infra`): the shared
//! ones serve everyone else.

use clawlink_e2e::{Options, Stack};
use serde_json::{Value, json};

fn note(text: &str, is_async: bool) -> Value {
    json!({"arguments": {"text": text}, "confirmed": true, "async": is_async})
}

fn shared_amqp_url() -> String {
    std::env::var("CLAWLINK_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A port on loopback that nothing listens on (bound, then released).
fn refusing_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `CLAWLINK_AMQP_URL` is a list whose first address refuses connections: the api and a
/// worker process connect to the next one, a call runs, and the worker's log names the
/// refusing address by host and port, never with its password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_list_whose_first_address_refuses_connects_to_the_next() {
    let dead = format!("amqp://guest:pw-of-the-dead-node@127.0.0.1:{}/%2f", refusing_port());
    let list = format!("{dead},{}", shared_amqp_url());
    let stack =
        Stack::start(Options { workers: 0, env: vec![("CLAWLINK_AMQP_URL".into(), list)], ..Default::default() }).await;
    let log = std::env::temp_dir().join(format!("{}-list-worker.log", stack.namespace));
    let mut worker = stack.spawn_worker_process("list", &[], &log);
    stack.wait_for_consumers(1).await;
    let (user, _) = stack.sandbox_user("broker-list@example.test").await;

    let (status, body) = stack.execute(&user.api_key, "sandbox_create_note", note("via the second", false), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true, "{body}");
    let id = body["executionId"].as_str().unwrap();
    assert_eq!(stack.emulator.stats().performed(id), 1);

    worker.kill().await.unwrap();
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let port = dead.rsplit_once(':').unwrap().1.trim_end_matches("/%2f");
    assert!(logged.contains(&format!("127.0.0.1:{port}")), "the refusing address is named:\n{logged}");
    assert!(logged.contains("broker address failed; trying the next"), "{logged}");
    assert!(!logged.contains("pw-of-the-dead-node"), "a broker password reached the log:\n{logged}");
    stack.finish().await;
}
