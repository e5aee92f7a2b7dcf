//! Group commit against a real Postgres (a fresh database, migrated): a row the database
//! refuses fails its own caller only — the other calls of its batch, of every account,
//! commit — and a failure that is not about a row fails the batch once, without retries.

use clawlink_common::batch::{Batcher, is_per_row};
use clawlink_common::db::executions::{self, Inserted, NewExecution};
use clawlink_common::db::{connections, devices, users};
use clawlink_common::ids::{DeviceId, ExecutionId, UserId};
use clawlink_common::queue::Lane;
use serde_json::json;
use sqlx::PgPool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A migrated database of its own, dropped with this value.
struct TestDb {
    pool: PgPool,
    name: String,
}

fn admin_url() -> String {
    std::env::var("CLAWLINK_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TestDb {
    async fn new() -> TestDb {
        // The prefix `deploy/local/test` sweeps when an interrupted run left one behind.
        let name = format!("clawlink_test_common_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let admin = PgPool::connect(&admin_url()).await.expect("connect to postgres (CLAWLINK_TEST_DATABASE_URL)");
        // The name is ours: a fixed prefix and hex digits.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.unwrap();
        admin.close().await;
        let url = format!("{}/{name}", admin_url().rsplit_once('/').expect("the admin URL names a database").0);
        let pool = PgPool::connect(&url).await.unwrap();
        clawlink_common::MIGRATOR.run(&pool).await.expect("migrations");
        TestDb { pool, name }
    }

    /// A user with a paired device and a default sandbox connection.
    async fn account(&self, email: &str) -> (UserId, DeviceId) {
        let mut conn = self.pool.acquire().await.unwrap();
        let user = users::upsert(&mut conn, email, "no-password", "Test").await.unwrap();
        let device = devices::create(&mut conn, user, "agent", email.as_bytes(), "clk_live_x", &Default::default())
            .await
            .unwrap();
        let new = connections::NewConnection {
            user,
            integration: "sandbox",
            connection_label: "main",
            account_label: "main",
            external_account_id: None,
        };
        connections::insert(&mut conn, &new).await.unwrap();
        (user, device)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(admin) = PgPool::connect(&admin_url()).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&admin).await;
                }
            })
        })
        .join();
    }
}

fn call(user: UserId, device: DeviceId, arguments: serde_json::Value) -> NewExecution {
    NewExecution {
        id: ExecutionId::new(),
        user,
        device: Some(device),
        connection: None,
        integration: "sandbox".into(),
        tool_name: "sandbox_echo".into(),
        arguments,
        lane: Lane::Interactive,
        idempotency_key: None,
        request_hash: None,
        awaiting_approval: None,
    }
}

/// The api's insert batcher (`clawlink_api`'s `inserts`), noting the size of each
/// statement it runs.
fn inserts(pool: PgPool, sizes: Arc<Mutex<Vec<usize>>>) -> Batcher<NewExecution, Inserted> {
    Batcher::start(move |new: Vec<NewExecution>| {
        let pool = pool.clone();
        sizes.lock().unwrap().push(new.len());
        async move {
            let mut conn = pool.acquire().await?;
            executions::insert_many(&mut conn, new, Duration::from_secs(10)).await
        }
    })
}

/// The tenant-isolation defect of issue 16: a NUL in one call's arguments (which JSONB
/// cannot hold) and a device deleted a moment ago (a foreign key) each made Postgres refuse
/// the whole batched insert, failing every call in it, of every account.
#[tokio::test]
async fn a_row_the_database_refuses_fails_only_its_own_call() {
    let db = TestDb::new().await;
    let mut accounts = Vec::new();
    for i in 0..4 {
        accounts.push(db.account(&format!("tenant{i}@example.test")).await);
    }
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let batcher = inserts(db.pool.clone(), sizes.clone());

    // Eight calls from four accounts in one batch (this runtime has one thread: every call
    // is queued before the batcher runs); the sixth holds NUL, the eighth a gone device.
    let mut calls: Vec<NewExecution> =
        (0..8).map(|i| call(accounts[i % 4].0, accounts[i % 4].1, json!({"message": format!("call {i}")}))).collect();
    calls[5].arguments = json!({"message": "a\u{0}b"});
    calls[7].device = Some(DeviceId(i64::MAX));
    let ids: Vec<ExecutionId> = calls.iter().map(|c| c.id).collect();
    let answers = futures_util::future::join_all(calls.into_iter().map(|c| batcher.call(c))).await;

    for (i, answer) in answers.iter().enumerate() {
        match (i, answer) {
            (5 | 7, Err(err)) => assert!(is_per_row(err), "call {i}: {err}"),
            (5 | 7, Ok(_)) => panic!("call {i} was recorded"),
            (_, Ok(Inserted::New(_))) => {}
            (_, Err(err)) => panic!("call {i} failed with its neighbour's error: {err}"),
            (_, Ok(_)) => panic!("call {i} was not recorded"),
        }
    }
    let code = |i: usize| answers[i].as_ref().err().and_then(|e| e.as_database_error()?.code()).unwrap().to_string();
    assert_eq!(code(5), "22P05", "JSONB refuses \\u0000");
    assert_eq!(code(7), "23503", "the device is gone");
    let recorded: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM executions ORDER BY id").fetch_all(&db.pool).await.unwrap();
    let mut good: Vec<uuid::Uuid> =
        ids.iter().enumerate().filter(|(i, _)| *i != 5 && *i != 7).map(|(_, id)| id.0).collect();
    good.sort();
    assert_eq!(recorded, good, "the six good calls, and only they, are recorded");
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM execution_outbox").fetch_one(&db.pool).await.unwrap();
    assert_eq!(outbox, 6, "each recorded call has its intent to publish");
    // The batch, then halves: [0..4] commits; [4..8] → [4,5] → [4] commits, [5] fails;
    // [6,7] → [6] commits, [7] fails.
    assert_eq!(*sizes.lock().unwrap(), [8, 4, 4, 2, 1, 1, 2, 1, 1]);

    // A lone bad call runs once.
    sizes.lock().unwrap().clear();
    let (user, device) = accounts[0];
    let err = batcher.call(call(user, device, json!({"message": "\u{0}"}))).await.err().expect("refused");
    assert!(is_per_row(&err), "{err}");
    assert_eq!(*sizes.lock().unwrap(), [1]);
}

/// A lost connection is not about a row: the batch fails once for everyone in it, and is
/// not split into a storm of statements against a database that is going away.
#[tokio::test]
async fn a_lost_connection_fails_the_batch_once() {
    let db = TestDb::new().await;
    let runs = Arc::new(Mutex::new(Vec::new()));
    let pool = db.pool.clone();
    let seen = runs.clone();
    let batcher: Batcher<u32, ()> = Batcher::start(move |inputs: Vec<u32>| {
        let pool = pool.clone();
        seen.lock().unwrap().push(inputs.len());
        async move {
            let mut conn = pool.acquire().await?;
            // The server ends this session, as a failover or a restart would.
            sqlx::query("SELECT pg_terminate_backend(pg_backend_pid())").execute(&mut *conn).await?;
            Ok(vec![(); inputs.len()])
        }
    });
    let answers = futures_util::future::join_all((0..8).map(|i| batcher.call(i))).await;
    for answer in &answers {
        let err = answer.as_ref().expect_err("the session was terminated");
        assert!(!is_per_row(err), "{err}");
    }
    assert_eq!(*runs.lock().unwrap(), [8], "one statement for the batch, no retries");
}
