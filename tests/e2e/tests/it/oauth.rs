//! Hosted OAuth connections end to end, against the emulator's authorization server: the
//! browser follows the real redirects by hand (web `/connect/{token}` → the provider's
//! authorize endpoint → web `/oauth/callback`), the web front exchanges the code with
//! PKCE and reads the account, and the worker calls the provider with the stored token.

use clawlink_common::crypto::RowIdentity;
use clawlink_common::db::credentials;
use clawlink_common::ids::{ConnectionId, UserId};
use clawlink_common::provider::CredentialBundle;
use clawlink_e2e::browser::{Browser, Page};
use clawlink_e2e::{OAUTH_CLIENT_ID, Options, Stack, TestUser};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const PASSWORD: &str = "pw";

/// A user with a paired device, signed in in a browser.
async fn person(stack: &Stack, email: &str) -> (TestUser, Browser) {
    let user = stack.user(email).await;
    let mut browser = Browser::new(&stack.web_url);
    assert_eq!(browser.sign_in(email, PASSWORD).await.status, 303);
    (user, browser)
}

/// The agent asks for a connect link to `integration`; returns the session token.
async fn agent_starts(stack: &Stack, user: &TestUser, integration: &str) -> String {
    let (status, started) = stack
        .post_json(&user.api_key, "/api/connect/start", json!({"integration": integration, "reuseIfConnected": false}))
        .await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["status"], "awaiting_user_action");
    started["sessionToken"].as_str().unwrap().to_string()
}

/// `GET /connect/{token}` in the browser: the redirect to the provider's authorize URL.
async fn open_connect_link(stack: &Stack, browser: &mut Browser, token: &str) -> reqwest::Url {
    let page = browser.get(&format!("/connect/{token}")).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let location = page.location.expect("a redirect to the provider");
    assert!(location.starts_with(&stack.emulator.url()) && location.contains("/oauth/authorize?"), "{location}");
    reqwest::Url::parse(&location).unwrap()
}

/// The provider's authorize endpoint (the emulator approves or denies at once): the
/// redirect back to the web front, as a path on it.
async fn at_provider(stack: &Stack, authorize: &reqwest::Url) -> String {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = http.get(authorize.clone()).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 302, "the provider redirects back");
    let location = resp.headers().get("location").unwrap().to_str().unwrap().to_string();
    let callback = format!("{}/oauth/callback?", stack.web_url);
    assert!(location.starts_with(&callback), "{location}");
    location[stack.web_url.len()..].to_string()
}

/// The whole hop for a session: link → provider → callback. Returns the final page and
/// the callback path (to replay it).
async fn complete(stack: &Stack, browser: &mut Browser, token: &str) -> (Page, String) {
    let authorize = open_connect_link(stack, browser, token).await;
    let callback = at_provider(stack, &authorize).await;
    (browser.get(&callback).await, callback)
}

/// The agent's poll of a connect session.
async fn poll(stack: &Stack, user: &TestUser, token: &str) -> Value {
    let (status, body) = stack.get(&user.api_key, &format!("/api/connect/sessions/{token}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// (id, account label, default) of the user's GitHub connections, by id.
async fn github_rows(stack: &Stack, user: UserId) -> Vec<(i64, String, bool)> {
    sqlx::query_as::<_, (i64, String, bool)>(
        "SELECT id, account_label, is_default FROM user_integrations
          WHERE user_id = $1 AND integration = 'github' ORDER BY id",
    )
    .bind(user.0)
    .fetch_all(&stack.db)
    .await
    .unwrap()
}

/// The stored access token of a connection, and the credential's version.
async fn stored_token(stack: &Stack, user: UserId, connection: ConnectionId) -> (String, i64) {
    let mut conn = stack.db.acquire().await.unwrap();
    let row = credentials::get(&mut conn, connection).await.unwrap().expect("a credential row");
    let plain = stack.keyring.open(RowIdentity::connection(user, connection), &row.sealed).unwrap();
    let CredentialBundle::Oauth2 { access_token, refresh_token, expires_at } =
        CredentialBundle::from_plaintext(plain.expose()).unwrap()
    else {
        panic!("not an OAuth credential");
    };
    assert!(refresh_token.is_some(), "the refresh token is kept");
    assert!(expires_at.is_some(), "the expiry is kept");
    (access_token.expose().to_string(), row.version)
}

fn get_issue(connection: Option<i64>) -> Value {
    let mut body = json!({"arguments": {"owner": "octo-org", "repo": "web", "issue_number": 42}});
    if let Some(id) = connection {
        body["connectionId"] = json!(id);
    }
    body
}

/// The account the emulator saw on its last GitHub API request (not the OAuth endpoints).
fn last_github_account(stack: &Stack) -> Option<String> {
    let stats = stack.emulator.stats();
    let last = stats
        .requests
        .iter()
        .rev()
        .find(|r| r.path.starts_with("/github/") && !r.path.starts_with("/github/oauth/"))
        .expect("a GitHub request");
    assert_eq!(last.status, 200, "{last:?}");
    last.account.clone()
}

fn github_api_requests(stack: &Stack) -> usize {
    let stats = stack.emulator.stats();
    stats.requests.iter().filter(|r| r.path.starts_with("/github/") && !r.path.starts_with("/github/oauth/")).count()
}

/// Connects the account `login` (the emulator's next approval) through an agent session;
/// returns the connection id the session reports.
async fn connect_account(stack: &Stack, user: &TestUser, browser: &mut Browser, login: &str) -> i64 {
    stack.emulator.oauth_next_account(login);
    let token = agent_starts(stack, user, "github").await;
    let (page, _) = complete(stack, browser, &token).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(&format!("GitHub is connected as {login}@example.test")), "{}", page.body);
    let polled = poll(stack, user, &token).await;
    assert_eq!(polled["session"]["status"], "connected", "{polled}");
    polled["connection"]["id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_started_oauth_connect_completes_in_the_browser() {
    let stack = Stack::start(Options::default()).await;
    let (user, mut browser) = person(&stack, "oauth@example.test").await;
    let token = agent_starts(&stack, &user, "github").await;

    // The link sends the person to the provider with PKCE S256, a state and the exact
    // redirect URI, as the registered client.
    let authorize = open_connect_link(&stack, &mut browser, &token).await;
    assert!(authorize.as_str().starts_with(&stack.emulator.oauth_authorize_url("github")), "{authorize}");
    let query: BTreeMap<String, String> = authorize.query_pairs().into_owned().collect();
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["client_id"], OAUTH_CLIENT_ID);
    assert_eq!(query["redirect_uri"], format!("{}/oauth/callback", stack.web_url));
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43);
    assert!(query["state"].len() >= 16, "an unguessable state");
    assert_eq!(query["scope"], "repo read:user");
    assert_eq!(poll(&stack, &user, &token).await["session"]["status"], "awaiting_user_action");

    // The provider approves and sends the person back; the web front finishes.
    let callback = at_provider(&stack, &authorize).await;
    let done = browser.get(&callback).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("GitHub is connected as emu-user@example.test"), "{}", done.body);
    let stats = stack.emulator.stats();
    assert_eq!(stats.token_calls("authorization_code"), 1, "one code exchange");
    assert_eq!(stats.served("github.identity"), 1, "the account was read with the new token");

    // The agent's poll shows it connected, with the connection.
    let polled = poll(&stack, &user, &token).await;
    assert_eq!(polled["session"]["status"], "connected", "{polled}");
    assert_eq!(polled["session"]["errorMessage"], Value::Null);
    let connection = &polled["connection"];
    assert_eq!(connection["isDefault"], true);
    assert_eq!(connection["status"], "active");
    assert_eq!(connection["accountLabel"], "emu-user@example.test");
    assert!(connection["expiresAt"].is_string(), "the token's expiry is shown: {connection}");
    let id = ConnectionId(connection["id"].as_i64().unwrap());
    let external: String = sqlx::query_scalar("SELECT external_account_id FROM user_integrations WHERE id = $1")
        .bind(id.0)
        .fetch_one(&stack.db)
        .await
        .unwrap();
    assert_eq!(external, "github-emu-user");

    // What is stored is exactly the token the provider issued.
    let issued = stack.emulator.oauth_tokens();
    assert_eq!(issued.len(), 1);
    let (access, version) = stored_token(&stack, user.id, id).await;
    assert_eq!(access, issued[0].access_token);
    assert_eq!(version, 1);

    // A GitHub tool runs with it, as that account.
    let (status, body) = stack.execute(&user.api_key, "github_get_issue", get_issue(None), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connectionId"], id.0);
    assert_eq!(body["data"]["number"], 42, "{body}");
    assert_eq!(last_github_account(&stack).as_deref(), Some("emu-user"));
    assert_eq!(stack.emulator.oauth_tokens()[0].uses, 2, "identity, then the tool");

    // The agent asking again reuses it.
    let (_, again) = stack.post_json(&user.api_key, "/api/connect/start", json!({"integration": "github"})).await;
    assert_eq!(again["alreadyConnected"], true, "{again}");
    assert_eq!(again["connection"]["id"], id.0);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_keeps_the_row_and_stores_a_new_credential() {
    let stack = Stack::start(Options::default()).await;
    let (user, mut browser) = person(&stack, "reconnect@example.test").await;
    let id = connect_account(&stack, &user, &mut browser, "emu-user").await;
    let (first_token, _) = stored_token(&stack, user.id, ConnectionId(id)).await;

    // The dashboard's Reconnect starts a session bound to the row.
    let page = browser.get("/connections").await;
    let reconnect = browser.post(&format!("/connections/{id}/reconnect"), &[("csrf", &page.csrf())]).await;
    assert_eq!(reconnect.status, 303, "{}", reconnect.body);
    let link = reconnect.location.unwrap();
    let token = link.strip_prefix("/connect/").expect("a connect link").to_string();
    let (done, _) = complete(&stack, &mut browser, &token).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("connected as emu-user@example.test"), "{}", done.body);

    let rows = github_rows(&stack, user.id).await;
    assert_eq!(rows, [(id, "emu-user@example.test".to_string(), true)], "the same row, still the default");
    let (second_token, version) = stored_token(&stack, user.id, ConnectionId(id)).await;
    assert_ne!(second_token, first_token, "a new credential");
    assert_eq!(version, 2);
    let issued = stack.emulator.oauth_tokens();
    assert_eq!(issued.len(), 2);
    assert_eq!(second_token, issued[1].access_token);

    // Calls use the new token.
    let used_before = issued[0].uses;
    let (status, body) = stack.execute(&user.api_key, "github_get_issue", get_issue(None), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connectionId"], id);
    let issued = stack.emulator.oauth_tokens();
    assert_eq!(issued[0].uses, used_before, "the old token is not used any more");
    assert_eq!(issued[1].uses, 2, "identity, then the tool");

    // Reconnecting as another account keeps the row too, now holding that account.
    stack.emulator.oauth_next_account("moved");
    let page = browser.get("/connections").await;
    let reconnect = browser.post(&format!("/connections/{id}/reconnect"), &[("csrf", &page.csrf())]).await;
    let token = reconnect.location.unwrap().strip_prefix("/connect/").unwrap().to_string();
    let (done, _) = complete(&stack, &mut browser, &token).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(github_rows(&stack, user.id).await, [(id, "moved@example.test".to_string(), true)]);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_account_adds_a_row_and_calls_pick_the_right_token() {
    let stack = Stack::start(Options::default()).await;
    let (user, mut browser) = person(&stack, "two@example.test").await;
    let first = connect_account(&stack, &user, &mut browser, "work").await;
    let second = connect_account(&stack, &user, &mut browser, "home").await;
    assert_ne!(first, second);
    let rows = github_rows(&stack, user.id).await;
    assert_eq!(
        rows,
        [(first, "work@example.test".to_string(), true), (second, "home@example.test".to_string(), false)],
        "the first stays the default"
    );

    // Without connectionId the default is used; with it, the named one.
    let (status, body) = stack.execute(&user.api_key, "github_get_issue", get_issue(None), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connectionId"], first);
    assert_eq!(last_github_account(&stack).as_deref(), Some("work"));
    let (status, body) = stack.execute(&user.api_key, "github_get_issue", get_issue(Some(second)), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connectionId"], second);
    assert_eq!(last_github_account(&stack).as_deref(), Some("home"));
    let (status, body) = stack.execute(&user.api_key, "github_get_issue", get_issue(Some(first)), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(last_github_account(&stack).as_deref(), Some("work"));

    // Each row holds its own account's token.
    let issued = stack.emulator.oauth_tokens();
    let token_of = |login: &str| issued.iter().find(|t| t.login == login).unwrap().access_token.clone();
    assert_eq!(stored_token(&stack, user.id, ConnectionId(first)).await.0, token_of("work"));
    assert_eq!(stored_token(&stack, user.id, ConnectionId(second)).await.0, token_of("home"));
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_account_connected_again_updates_its_row() {
    let stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let (user, mut browser) = person(&stack, "again@example.test").await;
    let id = connect_account(&stack, &user, &mut browser, "emu-user").await;
    let (first_token, _) = stored_token(&stack, user.id, ConnectionId(id)).await;

    let again = connect_account(&stack, &user, &mut browser, "emu-user").await;
    assert_eq!(again, id, "the session reports the existing row");
    assert_eq!(github_rows(&stack, user.id).await, [(id, "emu-user@example.test".to_string(), true)]);
    let (token, version) = stored_token(&stack, user.id, ConnectionId(id)).await;
    assert_ne!(token, first_token);
    assert_eq!(token, stack.emulator.oauth_tokens()[1].access_token);
    assert_eq!(version, 2);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_consent_fails_the_session_for_both_person_and_agent() {
    let stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let (user, mut browser) = person(&stack, "deny@example.test").await;
    let token = agent_starts(&stack, &user, "github").await;
    stack.emulator.oauth_deny_next();
    let (page, callback) = complete(&stack, &mut browser, &token).await;
    assert!(callback.contains("error=access_denied"), "{callback}");
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("Access was not granted at GitHub."), "{}", page.body);

    let polled = poll(&stack, &user, &token).await;
    assert_eq!(polled["session"]["status"], "failed", "{polled}");
    assert_eq!(polled["session"]["errorMessage"], "Access was not granted at GitHub.");
    assert_eq!(polled["connection"], Value::Null);
    assert!(github_rows(&stack, user.id).await.is_empty());
    assert_eq!(stack.emulator.stats().token_calls("authorization_code"), 0, "nothing to exchange");

    // The link is spent: opening it again shows why, and does not go to the provider.
    let reopened = browser.get(&format!("/connect/{token}")).await;
    assert_eq!(reopened.status, 200, "{}", reopened.body);
    assert!(reopened.body.contains("Access was not granted at GitHub."), "{}", reopened.body);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_forged_and_late_callbacks_are_refused() {
    let stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let (user, mut browser) = person(&stack, "replay@example.test").await;
    let token = agent_starts(&stack, &user, "github").await;
    let (done, callback) = complete(&stack, &mut browser, &token).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let id = ConnectionId(poll(&stack, &user, &token).await["connection"]["id"].as_i64().unwrap());
    let before = stored_token(&stack, user.id, id).await;

    // The same state and code again: refused, nothing exchanged, nothing written.
    let replay = browser.get(&callback).await;
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert!(replay.body.contains("not valid or was used already"), "{}", replay.body);
    assert_eq!(stack.emulator.stats().token_calls("authorization_code"), 1);
    assert_eq!(stored_token(&stack, user.id, id).await, before);
    assert_eq!(poll(&stack, &user, &token).await["session"]["status"], "connected");

    // A state ClawLink never issued, or none at all.
    let code = callback.split("code=").nth(1).unwrap().split('&').next().unwrap().to_string();
    for path in [format!("/oauth/callback?code={code}&state=forged-state"), format!("/oauth/callback?code={code}")] {
        let page = browser.get(&path).await;
        assert_eq!(page.status, 400, "{path}: {}", page.body);
    }
    assert_eq!(stack.emulator.stats().token_calls("authorization_code"), 1);
    assert_eq!(github_rows(&stack, user.id).await.len(), 1);

    // A session that expires while the person is at the provider: the callback is
    // refused and the code is never exchanged.
    let late = agent_starts(&stack, &user, "github").await;
    let authorize = open_connect_link(&stack, &mut browser, &late).await;
    let callback = at_provider(&stack, &authorize).await;
    sqlx::query("UPDATE connect_sessions SET expires_at = now() - interval '1 second' WHERE token = $1")
        .bind(&late)
        .execute(&stack.db)
        .await
        .unwrap();
    let page = browser.get(&callback).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("expired"), "{}", page.body);
    let polled = poll(&stack, &user, &late).await;
    assert_ne!(polled["session"]["status"], "connected", "{polled}");
    assert_eq!(polled["connection"], Value::Null);
    assert_eq!(stack.emulator.stats().token_calls("authorization_code"), 1, "the late code was not exchanged");
    assert_eq!(github_rows(&stack, user.id).await.len(), 1);
    assert_eq!(stored_token(&stack, user.id, id).await, before);

    // A link that expired before it was opened does not go to the provider at all.
    let stale = agent_starts(&stack, &user, "github").await;
    sqlx::query("UPDATE connect_sessions SET expires_at = now() - interval '1 second' WHERE token = $1")
        .bind(&stale)
        .execute(&stack.db)
        .await
        .unwrap();
    let page = browser.get(&format!("/connect/{stale}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.location.is_none() && page.body.contains("expired"), "{}", page.body);
    assert_eq!(poll(&stack, &user, &stale).await["session"]["status"], "expired");

    // Someone else's browser cannot finish this person's flow.
    let pending = agent_starts(&stack, &user, "github").await;
    let authorize = open_connect_link(&stack, &mut browser, &pending).await;
    let callback = at_provider(&stack, &authorize).await;
    let (_, mut stranger) = person(&stack, "stranger@example.test").await;
    let page = stranger.get(&callback).await;
    assert!(page.status >= 400, "{}", page.body);
    assert_ne!(poll(&stack, &user, &pending).await["session"]["status"], "connected");
    assert_eq!(stack.emulator.stats().token_calls("authorization_code"), 1);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_ciphertext_is_unreadable_and_never_reaches_the_provider() {
    let stack = Stack::start(Options::default()).await;
    let (user, mut browser) = person(&stack, "swap@example.test").await;
    let first = connect_account(&stack, &user, &mut browser, "alpha").await;
    let second = connect_account(&stack, &user, &mut browser, "beta").await;
    let (status, body) = stack.execute(&user.api_key, "github_get_issue", get_issue(Some(second)), &[]).await;
    assert_eq!(status, 200, "{body}");

    // Someone with database access swaps the two rows' sealed credentials.
    let swapped = sqlx::query(
        "UPDATE credentials c SET key_id = o.key_id, nonce = o.nonce, ciphertext = o.ciphertext
           FROM credentials o
          WHERE (c.connection_id, o.connection_id) IN (($1, $2), ($2, $1))",
    )
    .bind(first)
    .bind(second)
    .execute(&stack.db)
    .await
    .unwrap();
    assert_eq!(swapped.rows_affected(), 2);

    let calls_before = github_api_requests(&stack);
    let token_calls_before = stack.emulator.stats().oauth_token_calls;
    let uses_before: Vec<u32> = stack.emulator.oauth_tokens().iter().map(|t| t.uses).collect();
    for body in [get_issue(None), get_issue(Some(first)), get_issue(Some(second))] {
        let (status, answer) = stack.execute(&user.api_key, "github_get_issue", body, &[]).await;
        // 401 with a reconnect hint: the person can fix it by connecting again.
        assert_eq!(status, 401, "{answer}");
        assert!(answer["hint"].as_str().unwrap_or_default().contains("Reconnect"), "{answer}");
        assert_eq!(answer["ok"], false, "{answer}");
        assert_eq!(answer["error"]["code"], "credential_unreadable", "{answer}");
        assert!(!answer.to_string().contains("emu-github-at-"), "no token in the answer: {answer}");
    }
    assert_eq!(github_api_requests(&stack), calls_before, "nothing went to GitHub");
    assert_eq!(stack.emulator.stats().oauth_token_calls, token_calls_before, "nor to its token endpoint");
    let uses_after: Vec<u32> = stack.emulator.oauth_tokens().iter().map(|t| t.uses).collect();
    assert_eq!(uses_after, uses_before, "neither token was presented");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_token_is_refreshed_with_rotation_before_the_call() {
    let stack = Stack::start(Options::default()).await;
    let (user, mut browser) = person(&stack, "short@example.test").await;
    // The connect flow's token lives 30 s, inside the refresh margin: the first call
    // refreshes it. The refreshed one lives an hour.
    stack.emulator.oauth_set_expires_in(30);
    let id = connect_account(&stack, &user, &mut browser, "emu-user").await;
    stack.emulator.oauth_set_expires_in(3600);
    let (status, body) = stack.execute(&user.api_key, "github_get_issue", get_issue(None), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stack.emulator.stats().token_calls("refresh_token"), 1, "one refresh");
    let issued = stack.emulator.oauth_tokens();
    assert_eq!(issued.len(), 2);
    assert_eq!(issued[1].grant_type, "refresh_token");
    assert_eq!(issued[1].uses, 1, "the call went out with the refreshed token");
    assert_eq!(issued[0].uses, 1, "the short-lived token only read the identity");
    let (stored, version) = stored_token(&stack, user.id, ConnectionId(id)).await;
    assert_eq!(stored, issued[1].access_token);
    assert_eq!(version, 2);

    // A fresh token is used as it is.
    let (status, body) = stack.execute(&user.api_key, "github_get_issue", get_issue(None), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stack.emulator.stats().token_calls("refresh_token"), 1);
    assert_eq!(stack.emulator.oauth_tokens()[1].uses, 2);

    // The refresh token the connect flow stored was rotated away: it is spent.
    let spent = stack
        .http
        .post(stack.emulator.oauth_token_url("github"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", issued[0].refresh_token.as_str()),
            ("client_id", OAUTH_CLIENT_ID),
            ("client_secret", clawlink_e2e::OAUTH_CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(spent.status().as_u16(), 400);
    assert_eq!(spent.json::<Value>().await.unwrap()["error"], "invalid_grant");
    stack.finish().await;
}
