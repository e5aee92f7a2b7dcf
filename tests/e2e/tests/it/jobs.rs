//! The scheduled upkeep: sessions expire, stuck executions are failed with a reason, old
//! bodies are purged — and running it twice at once is harmless.

use clawlink_common::db::maintenance;
use clawlink_e2e::{Options, Stack};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upkeep_expires_reaps_and_purges() {
    let stack = Stack::start(Options::default()).await;
    let (user, _) = stack.sandbox_user("upkeep@example.test").await;
    let (_, done) = stack.execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "old"}}), &[]).await;
    let old_id: uuid::Uuid = done["executionId"].as_str().unwrap().parse().unwrap();
    let (_, stuck) =
        stack.execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "stuck"}}), &[]).await;
    let stuck_id: uuid::Uuid = stuck["executionId"].as_str().unwrap().parse().unwrap();
    stack.wait_for_rows_final().await;
    // Make one look stuck (a worker died mid-call long ago: no result anywhere) and the
    // other old.
    let redis_url = std::env::var("CLAWLINK_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let mut redis = redis::Client::open(redis_url).unwrap().get_multiplexed_async_connection().await.unwrap();
    let _: () =
        redis::cmd("DEL").arg(format!("{}:result:{stuck_id}", stack.namespace)).query_async(&mut redis).await.unwrap();
    sqlx::query("UPDATE executions SET status = 'running', finished_at = NULL, started_at = now() - interval '2 hours' WHERE id = $1").bind(stuck_id).execute(&stack.db).await.unwrap();
    sqlx::query("UPDATE executions SET created_at = now() - interval '40 days' WHERE id = $1")
        .bind(old_id)
        .execute(&stack.db)
        .await
        .unwrap();
    let resp = stack
        .http
        .post(format!("{}/api/openclaw/pair/start", stack.api_url))
        .json(&json!({"deviceLabel": "x"}))
        .send()
        .await
        .unwrap();
    let token = resp.json::<serde_json::Value>().await.unwrap()["sessionToken"].as_str().unwrap().to_string();
    sqlx::query("UPDATE pairing_sessions SET expires_at = now() - interval '1 minute'")
        .execute(&stack.db)
        .await
        .unwrap();

    // Two replicas at once: each row is handled once.
    let (a, b) = tokio::join!(
        async { maintenance::reap_stuck(&mut *stack.db.acquire().await.unwrap(), 1800, 100).await.unwrap() },
        async { maintenance::reap_stuck(&mut *stack.db.acquire().await.unwrap(), 1800, 100).await.unwrap() },
    );
    assert_eq!(a + b, 1, "the stuck execution was reaped once");
    let (status, polled) = stack.get(&user.api_key, &format!("/api/executions/{stuck_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(polled["status"], "failed");
    assert_eq!(polled["error"]["code"], "stuck", "{polled}");

    let mut conn = stack.db.acquire().await.unwrap();
    assert!(maintenance::expire_sessions(&mut conn, 100).await.unwrap() >= 1);
    let status: String = sqlx::query_scalar("SELECT status FROM pairing_sessions WHERE token = $1")
        .bind(&token)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(status, "expired");
    assert_eq!(maintenance::purge_bodies(&mut conn, 30, 100).await.unwrap(), 1);
    let args: serde_json::Value = sqlx::query_scalar("SELECT arguments FROM executions WHERE id = $1")
        .bind(old_id)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(args, json!({}), "the old call's arguments are gone");
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM executions").fetch_one(&mut *conn).await.unwrap();
    assert_eq!(kept, 2, "the audit rows stay");
    drop(conn);
    stack.finish().await;
}

/// `clawlink_job_runs_total{name,outcome}` of the api's `/metrics`, or 0.
async fn job_runs(stack: &Stack, name: &str, outcome: &str) -> u64 {
    let text = stack.http.get(format!("{}/metrics", stack.api_url)).send().await.unwrap().text().await.unwrap();
    let series = format!(r#"clawlink_job_runs_total{{name="{name}",outcome="{outcome}"}} "#);
    text.lines().find_map(|l| l.strip_prefix(&series)).map(|v| v.trim().parse::<f64>().unwrap() as u64).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scheduled_job_counts_its_runs_and_failures() {
    let stack = Stack::start(Options {
        workers: 0,
        env: vec![("CLAWLINK_JOB_INTERVAL_MS".into(), "300".into())],
        ..Default::default()
    })
    .await;
    // Every job is declared at zero from the start, then counts its runs.
    for name in clawlink_api::jobs::JOBS {
        let mut runs = 0;
        for _ in 0..150 {
            runs = job_runs(&stack, name, "ok").await;
            if runs >= 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(runs >= 1, "job {name} never reported a run");
        assert_eq!(job_runs(&stack, name, "failed").await, 0, "job {name} failed");
    }

    // A step that cannot do its work is counted as failed, and the others carry on.
    sqlx::query("ALTER TABLE pairing_sessions RENAME TO pairing_sessions_gone").execute(&stack.db).await.unwrap();
    let reaped_before = job_runs(&stack, "reap_stuck_executions", "ok").await;
    let (mut failed, mut reaped) = (0, 0);
    for _ in 0..100 {
        failed = job_runs(&stack, "expire_sessions", "failed").await;
        reaped = job_runs(&stack, "reap_stuck_executions", "ok").await;
        if failed >= 1 && reaped > reaped_before + 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(failed >= 1, "a failing expire_sessions run was not counted");
    assert!(reaped > reaped_before + 1, "the reaper kept running ({reaped_before} -> {reaped})");
    sqlx::query("ALTER TABLE pairing_sessions_gone RENAME TO pairing_sessions").execute(&stack.db).await.unwrap();
    stack.finish().await;
}

/// Pairing starts need no account: the upkeep deletes pairing (and connect) sessions that
/// expired longer ago than `CLAWLINK_EXPIRED_SESSION_RETENTION_HOURS`, and keeps younger
/// ones, which still read `expired`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expired_past_their_retention_are_deleted() {
    let stack = Stack::start(Options {
        workers: 0,
        env: vec![
            ("CLAWLINK_JOB_INTERVAL_MS".into(), "300".into()),
            ("CLAWLINK_EXPIRED_SESSION_RETENTION_HOURS".into(), "1".into()),
        ],
        ..Default::default()
    })
    .await;
    let mut tokens = Vec::new();
    for label in ["old", "recent", "open"] {
        let resp = stack
            .http
            .post(format!("{}/api/openclaw/pair/start", stack.api_url))
            .json(&json!({"deviceLabel": label}))
            .send()
            .await
            .unwrap();
        tokens.push(resp.json::<serde_json::Value>().await.unwrap()["sessionToken"].as_str().unwrap().to_string());
    }
    for (token, ago) in [(&tokens[0], "2 hours"), (&tokens[1], "30 minutes")] {
        sqlx::query("UPDATE pairing_sessions SET expires_at = now() - $2::interval WHERE token = $1")
            .bind(token)
            .bind(ago)
            .execute(&stack.db)
            .await
            .unwrap();
    }
    let user = stack.user("connect-upkeep@example.test").await;
    for (token, expires) in
        [("connect-old", "now() - interval '2 hours'"), ("connect-open", "now() + interval '5 minutes'")]
    {
        let insert = format!(
            "INSERT INTO connect_sessions (token, user_id, integration, display_code, expires_at)
             VALUES ('{token}', $1, 'sandbox', 'ABCD-EFGH', {expires})"
        );
        sqlx::query(sqlx::AssertSqlSafe(insert)).bind(user.id.0).execute(&stack.db).await.unwrap();
    }

    let left = || async {
        let pairing: Vec<String> =
            sqlx::query_scalar("SELECT token FROM pairing_sessions ORDER BY id").fetch_all(&stack.db).await.unwrap();
        let connect: Vec<String> =
            sqlx::query_scalar("SELECT token FROM connect_sessions ORDER BY id").fetch_all(&stack.db).await.unwrap();
        (pairing, connect)
    };
    let mut now = left().await;
    for _ in 0..100 {
        if now.0.len() == 2 && now.1.len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        now = left().await;
    }
    assert_eq!(now, (tokens[1..].to_vec(), vec!["connect-open".to_string()]), "what the upkeep left");
    let status = |token: String| {
        let url = format!("{}/api/openclaw/pair/sessions/{token}", stack.api_url);
        let http = stack.http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    assert_eq!(status(tokens[0].clone()).await.0, 404, "a deleted session is unknown");
    let (code, recent) = status(tokens[1].clone()).await;
    assert_eq!((code, recent["session"]["status"].as_str()), (200, Some("expired")), "{recent}");
    stack.finish().await;
}
