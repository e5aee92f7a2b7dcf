//! A small chaos run (see `clawlink_e2e::chaos`): a few hundred calls while workers are
//! SIGKILLed and a private RabbitMQ and Redis restart. The large run is
//! `deploy/local/chaos --calls 20000` (RELIABILITY.md).

use clawlink_e2e::chaos::{ChaosOptions, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_chaos_run_loses_nothing_and_does_nothing_twice() {
    let report = run(ChaosOptions { calls: 300, kills: 3, ..Default::default() }).await.expect("chaos run");
    let table = report.table();
    println!("{table}");
    assert_eq!(report.submitted, 300, "{table}");
    assert_eq!(report.lost, 0, "accepted executions were lost:\n{table}");
    assert_eq!(report.duplicated, 0, "executions were performed twice outside the window:\n{table}");
    assert_eq!(report.unanswered, 0, "callers got no answer ({:?}):\n{table}", report.unanswered_examples);
    assert_eq!(report.failed_without_reason, 0, "{table}");
    assert_eq!(report.succeeded_unperformed, 0, "{table}");
    assert_eq!(report.kills, 3, "the faults happened:\n{table}");
    assert!(report.rabbit_away_ms.is_some() && report.redis_away_ms.is_some(), "{table}");
    assert!(report.succeeded > 0, "{table}");
}
