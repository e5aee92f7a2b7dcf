//! A small chaos run (see `clawlink_e2e::chaos`): a few hundred calls while workers are
//! SIGKILLed (at random and with calls at a slow provider), an api replica is SIGKILLed
//! between its inserts and their publishes, publisher confirms and board answers are
//! lost, and a private RabbitMQ and Redis restart. The large run is
//! `deploy/local/chaos --calls 20000` (RELIABILITY.md).

use clawlink_e2e::chaos::{ChaosOptions, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_chaos_run_loses_nothing_and_does_nothing_twice() {
    let report = run(ChaosOptions { calls: 300, kills: 3, ..Default::default() }).await.expect("chaos run");
    let table = report.table();
    println!("{table}");
    assert_eq!(report.submitted, 300, "{table}");
    assert_eq!(report.lost, 0, "accepted executions were lost:\n{table}");
    assert_eq!(report.stranded, 0, "executions were left queued or running:\n{table}");
    assert_eq!(report.duplicated, 0, "executions were performed twice outside the documented classes:\n{table}");
    assert_eq!(report.unanswered, 0, "callers got no answer ({:?}):\n{table}", report.unanswered_examples);
    assert_eq!(report.failed_without_reason, 0, "{table}");
    assert_eq!(report.succeeded_unperformed, 0, "{table}");
    assert_eq!(report.refused_performed, 0, "a call refused as not started was performed:\n{table}");
    assert_eq!(report.refused_for_good, 0, "a refused call retried with the same key was refused for good:\n{table}");
    assert_eq!(report.board_unknown_resent, 0, "an outcome_unknown board post was sent again:\n{table}");
    assert_eq!(report.cut_off_other_execution, 0, "a retry with the same key got another execution:\n{table}");
    assert_eq!(report.unpublished_final, report.unpublished_at_kill, "jobs an api never published:\n{table}");
    assert!(report.holds(), "{table}");
    // The faults happened.
    assert_eq!(report.kills, 3 + 2, "random and mid-call worker kills:\n{table}");
    assert_eq!(report.mid_call_kills, 2, "{table}");
    assert!(report.in_flight_at_mid_call_kills > 0, "a mid-call kill found calls at the provider:\n{table}");
    assert_eq!(report.api_kills, 2, "{table}");
    assert!(report.lost_confirms > 0, "a publisher confirm was lost:\n{table}");
    assert!(report.rabbit_away_ms.is_some() && report.redis_away_ms.is_some(), "{table}");
    assert!(report.board_calls > 0 && report.slow_calls > 0, "{table}");
    assert!(report.succeeded > 0, "{table}");
}
