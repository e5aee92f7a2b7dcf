//! The admin queue view over plain HTTP: who may see it, the live JSON it polls, and the
//! dead letters' replay and discard against the real broker (the Chromium test watches
//! the same page update itself).

use clawlink_common::queue::Lane;
use clawlink_e2e::browser::Browser;
use clawlink_e2e::{Options, Stack};
use lapin::options::{BasicGetOptions, BasicRejectOptions};
use serde_json::{Value, json};
use std::time::Duration;

/// Submits an async call (it waits in the bulk lane: no worker runs), then plays a worker
/// that dies with it: the row is claimed (`running`) and the message rejected without
/// requeue, so the broker dead-letters it as it does past the delivery limit.
pub(crate) async fn dead_letter(stack: &Stack, key: &str, message: &str) -> String {
    let (status, body) =
        stack.execute(key, "sandbox_echo", json!({"arguments": {"message": message}, "async": true}), &[]).await;
    assert_eq!(status, 202, "{body}");
    let id = body["executionId"].as_str().unwrap().to_string();
    let uuid: uuid::Uuid = id.parse().unwrap();
    sqlx::query("UPDATE executions SET status = 'running', attempts = attempts + 1, started_at = now() WHERE id = $1")
        .bind(uuid)
        .execute(&stack.db)
        .await
        .unwrap();
    let channel = stack.amqp_channel().await;
    let queue = stack.topology().work_queue(Lane::Bulk);
    let got =
        channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false }).await.unwrap().expect("a message");
    assert!(String::from_utf8_lossy(&got.delivery.data).contains(&id));
    got.delivery.acker.reject(BasicRejectOptions { requeue: false }).await.unwrap();
    let _ = channel.close(200, "done".into()).await;
    let dead = stack.topology().dead_letter_queue();
    for _ in 0..100 {
        if stack.queue_state(&dead).await.0 >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    id
}

async fn stats(browser: &mut Browser) -> Value {
    let page = browser.get("/admin/queues.json").await;
    assert_eq!(page.status, 200, "{}", page.body);
    serde_json::from_str(&page.body).unwrap()
}

fn ready(stats: &Value, kind: &str) -> u64 {
    stats["queues"].as_array().unwrap().iter().filter(|q| q["kind"] == kind).map(|q| q["ready"].as_u64().unwrap()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_see_the_queue_view_and_they_can_replay_and_discard_dead_letters() {
    let mut stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let (agent, _) = stack.sandbox_user("agent@example.test").await;
    // Another sandbox connection of theirs, which the calls below do not use (a pause
    // on the default one would hold the replayed call back).
    let connection = stack.sandbox_connection(agent.id, "spare", clawlink_e2e::SANDBOX_TOKEN).await;
    stack.user("ops@example.test").await;

    // Not an admin, signed out, or a made-up action: the same 404 as an unknown page.
    let mut anonymous = Browser::new(&stack.web_url);
    for path in ["/admin/queues", "/admin/queues.json"] {
        assert_eq!(anonymous.get(path).await.status, 404, "{path}");
    }
    let mut person = Browser::new(&stack.web_url);
    person.sign_in("agent@example.test", "pw").await;
    let home = person.get("/").await;
    assert!(!home.body.contains("/admin/queues"), "no admin link for a non-admin");
    let csrf = home.csrf();
    assert_eq!(person.get("/admin/queues").await.status, 404);
    assert_eq!(person.get("/admin/queues.json").await.status, 404);

    // The command makes someone an admin; an unknown email is refused with its reason.
    let err = clawlink_api::commands::make_admin(&stack.env, &["nobody@example.test".into()]).await.unwrap_err();
    assert!(err.to_string().contains("no account"), "{err:#}");
    clawlink_api::commands::make_admin(&stack.env, &["OPS@example.test".into()]).await.unwrap();
    let mut admin = Browser::new(&stack.web_url);
    admin.sign_in("ops@example.test", "pw").await;
    assert!(admin.get("/").await.body.contains("/admin/queues"), "the home page links the queue view");

    let replayed = dead_letter(&stack, &agent.api_key, "replay me").await;
    let discarded = dead_letter(&stack, &agent.api_key, "discard me").await;
    // One waiting call in the bulk lane as well.
    let (status, _) = stack
        .execute(&agent.api_key, "sandbox_echo", json!({"arguments": {"message": "waiting"}, "async": true}), &[])
        .await;
    assert_eq!(status, 202);

    let s = stats(&mut admin).await;
    assert_eq!(ready(&s, "dead"), 2, "{s}");
    assert_eq!(ready(&s, "bulk"), 1, "{s}");
    assert!(s["rates"]["publish"].as_f64().unwrap() > 0.0, "three calls were published: {s}");
    // A 429 pauses a connection: the view shows it, with when it ends.
    let url = std::env::var("CLAWLINK_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let redis = redis::aio::ConnectionManager::new(redis::Client::open(url).unwrap()).await.unwrap();
    let pacer = clawlink_common::pacing::Pacer::new(redis, &stack.namespace, std::iter::empty());
    pacer.pause("sandbox", connection, Duration::from_secs(60)).await.unwrap();
    let s = stats(&mut admin).await;
    let sandbox = s["pacing"].as_array().unwrap().iter().find(|p| p["provider"] == "sandbox").expect("sandbox pacing");
    assert_eq!(sandbox["paused"][0]["connection"], connection.0.to_string(), "{sandbox}");
    let until = sandbox["paused"][0]["untilMs"].as_i64().unwrap();
    assert!((until - s["atMs"].as_i64().unwrap() - 60_000).abs() < 5_000, "paused for about a minute: {sandbox}");

    let page = admin.get("/admin/queues").await;
    assert_eq!(page.status, 200);
    for needle in [replayed.as_str(), discarded.as_str(), "sandbox_echo", "rejected", "running"] {
        assert!(page.body.contains(needle), "{needle} missing from the dead letters: {}", page.body);
    }
    // Listing put them back: still two.
    assert_eq!(ready(&stats(&mut admin).await, "dead"), 2);

    // Forms need the admin's CSRF token; someone else's actions are a 404.
    let admin_csrf = page.csrf();
    assert_eq!(admin.post(&format!("/admin/dead-letters/{replayed}/replay"), &[("csrf", "forged")]).await.status, 403);
    assert_eq!(person.post(&format!("/admin/dead-letters/{replayed}/replay"), &[("csrf", &csrf)]).await.status, 404);
    assert_eq!(ready(&stats(&mut admin).await, "dead"), 2, "refused actions changed nothing");

    // Replay: back in its lane, the row queued again; a worker then runs it.
    let done = admin.post(&format!("/admin/dead-letters/{replayed}/replay"), &[("csrf", &admin_csrf)]).await;
    assert_eq!(done.location.as_deref(), Some("/admin/queues?done=replayed"), "{}", done.body);
    assert_eq!(stack.execution_status(&replayed).await, "queued");
    let s = stats(&mut admin).await;
    assert_eq!((ready(&s, "dead"), ready(&s, "bulk")), (1, 2), "{s}");
    let again = admin.post(&format!("/admin/dead-letters/{replayed}/replay"), &[("csrf", &admin_csrf)]).await;
    assert_eq!(again.status, 404, "a replayed message is no longer there");

    // Discard: gone, and the agent reads a clear failure.
    let done = admin.post(&format!("/admin/dead-letters/{discarded}/discard"), &[("csrf", &admin_csrf)]).await;
    assert_eq!(done.location.as_deref(), Some("/admin/queues?done=discarded"), "{}", done.body);
    let (_, polled) = stack.get(&agent.api_key, &format!("/api/executions/{discarded}")).await;
    assert_eq!(polled["status"], "failed", "{polled}");
    assert_eq!(polled["error"]["code"], "dead_lettered", "{polled}");
    assert!(polled["error"]["message"].as_str().unwrap().contains("discarded"), "{polled}");
    let page = admin.get("/admin/queues").await;
    assert!(page.body.contains("The dead-letter queue is empty"), "{}", page.body);

    stack.start_worker().await;
    let (_, polled) = stack.get(&agent.api_key, &format!("/api/executions/{replayed}?waitMs=10000")).await;
    assert_eq!(polled["status"], "succeeded", "the replayed call ran: {polled}");
    assert_eq!(stack.execution_status(&discarded).await, "failed", "a discarded call stays failed");
    stack.finish().await;
}
