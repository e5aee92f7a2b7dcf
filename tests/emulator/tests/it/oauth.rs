//! The OAuth 2.0 authorization server every catalog provider serves under
//! `/<provider>/oauth/`: authorize redirects, the code exchange with PKCE S256, refresh
//! rotation, expiry, per-account identities, and the control plane that steers them.

use std::collections::BTreeMap;
use std::time::Duration;

use clawlink_common::catalog::{Catalog, default_dir};
use clawlink_emulator::{
    DEFAULT_OAUTH_ACCOUNT, DEFAULT_OAUTH_CLIENT_ID, DEFAULT_OAUTH_CLIENT_SECRET, Emulator, Fault, FaultKind,
    OauthClient,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{json_of, start};

/// RFC 7636 appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";

/// A client that does not follow redirects: the tests read them.
fn browser() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The query of a redirect's `Location`, after checking it goes to `REDIRECT`.
fn redirect_params(response: &reqwest::Response) -> BTreeMap<String, String> {
    assert_eq!(response.status(), StatusCode::FOUND, "the authorize endpoint redirects");
    let location = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_else(|| panic!("a redirect has a Location"));
    let url = url::Url::parse(location).unwrap_or_else(|e| panic!("{location}: {e}"));
    assert_eq!(format!("{}://{}{}", url.scheme(), url.authority(), url.path()), REDIRECT);
    url.query_pairs().into_owned().collect()
}

async fn authorize(
    client: &reqwest::Client,
    emulator: &Emulator,
    provider: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut query = vec![
        ("response_type", "code"),
        ("client_id", DEFAULT_OAUTH_CLIENT_ID),
        ("redirect_uri", REDIRECT),
        ("state", "st-1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("scope", "repo read:user"),
    ];
    for (k, v) in extra {
        query.retain(|(name, _)| name != k);
        if !v.is_empty() {
            query.push((k, v));
        }
    }
    client
        .get(emulator.oauth_authorize_url(provider))
        .query(&query)
        .send()
        .await
        .unwrap_or_else(|e| panic!("authorize: {e}"))
}

/// A code for `provider` issued to the default client.
async fn code(client: &reqwest::Client, emulator: &Emulator, provider: &str) -> String {
    let params = redirect_params(&authorize(client, emulator, provider, &[]).await);
    assert_eq!(params.get("state").map(String::as_str), Some("st-1"));
    params.get("code").cloned().unwrap_or_else(|| panic!("no code in {params:?}"))
}

async fn token(
    client: &reqwest::Client,
    emulator: &Emulator,
    provider: &str,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let response = client
        .post(emulator.oauth_token_url(provider))
        .form(form)
        .send()
        .await
        .unwrap_or_else(|e| panic!("token: {e}"));
    let status = response.status();
    (status, json_of(response).await)
}

async fn exchange(client: &reqwest::Client, emulator: &Emulator, provider: &str, code: &str) -> (StatusCode, Value) {
    token(
        client,
        emulator,
        provider,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", DEFAULT_OAUTH_CLIENT_ID),
            ("client_secret", DEFAULT_OAUTH_CLIENT_SECRET),
        ],
    )
    .await
}

async fn refresh(
    client: &reqwest::Client,
    emulator: &Emulator,
    provider: &str,
    refresh_token: &str,
) -> (StatusCode, Value) {
    token(
        client,
        emulator,
        provider,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", DEFAULT_OAUTH_CLIENT_ID),
            ("client_secret", DEFAULT_OAUTH_CLIENT_SECRET),
        ],
    )
    .await
}

/// GitHub's identity (`GET /user`) with `token`.
async fn github_user(client: &reqwest::Client, emulator: &Emulator, token: &str) -> (StatusCode, Value) {
    let response = client
        .get(format!("{}/user", emulator.provider_url("github")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status();
    (status, json_of(response).await)
}

fn text<'v>(value: &'v Value, field: &str) -> &'v str {
    value[field].as_str().unwrap_or_else(|| panic!("{field} in {value}"))
}

#[tokio::test]
async fn a_code_with_pkce_becomes_tokens_once_and_signs_in_as_its_account() {
    let emulator = start().await;
    let client = browser();
    let code = code(&client, &emulator, "github").await;

    // HTTP Basic client authentication, as the `oauth2` crate sends it.
    let response = client
        .post(emulator.oauth_token_url("github"))
        .basic_auth(DEFAULT_OAUTH_CLIENT_ID, Some(DEFAULT_OAUTH_CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let tokens = json_of(response).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert_eq!(tokens["scope"], "repo read:user");
    let access = text(&tokens, "access_token").to_owned();
    assert!(!text(&tokens, "refresh_token").is_empty());

    // The provider accepts the token as its account, and says who that is.
    let (status, me) = github_user(&client, &emulator, &access).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["id"], format!("github-{DEFAULT_OAUTH_ACCOUNT}"));
    assert_eq!(me["login"], format!("{DEFAULT_OAUTH_ACCOUNT}@example.test"));
    assert_eq!(me["name"], "The Octocat", "the rest of the fixture stays");
    let stats = emulator.stats();
    assert_eq!(stats.token_calls("authorization_code"), 1);
    assert_eq!(stats.by_account(DEFAULT_OAUTH_ACCOUNT), 1);
    assert_eq!(stats.served("github.identity"), 1);
    let issued = emulator.oauth_tokens();
    assert_eq!(issued.len(), 1);
    assert_eq!((issued[0].provider.as_str(), issued[0].uses, issued[0].expired), ("github", 1, false));

    // The token is GitHub's only; a fixed token keeps the fixture's identity.
    let slack = client
        .get(format!("{}/auth.test", emulator.provider_url("slack")))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(slack.status(), StatusCode::OK, "Slack answers 200 with ok=false");
    assert_eq!(json_of(slack).await["ok"], false);
    let (status, fixture) = github_user(&client, &emulator, crate::TOKEN).await;
    assert_eq!((status, &fixture["login"]), (StatusCode::OK, &json!("octocat")));

    // A replayed code is refused, and what it issued is revoked (RFC 6749 §4.1.2).
    let (status, again) = exchange(&client, &emulator, "github", &code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(again["error"], "invalid_grant");
    let (status, _) = github_user(&client, &emulator, &access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(emulator.oauth_tokens()[0].revoked);
    assert_eq!(emulator.stats().token_calls("authorization_code"), 2);
    emulator.shutdown().await;
}

#[tokio::test]
async fn the_exchange_checks_verifier_client_and_redirect_uri() {
    let emulator = start().await;
    let client = browser();
    let base = |code: &str| {
        [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", DEFAULT_OAUTH_CLIENT_ID),
            ("client_secret", DEFAULT_OAUTH_CLIENT_SECRET),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec()
    };
    // The exchange of `code` with `name` set to `value` (left out when empty).
    let with = |code: &str, name: &str, value: &str| {
        let mut form = base(code);
        form.retain(|(k, _)| k != name);
        if !value.is_empty() {
            form.push((name.to_owned(), value.to_owned()));
        }
        form
    };
    let send = |form: Vec<(String, String)>| {
        let client = client.clone();
        let url = emulator.oauth_token_url("github");
        async move {
            let response = client.post(url).form(&form).send().await.unwrap_or_else(|e| panic!("{e}"));
            let status = response.status();
            (status, json_of(response).await)
        }
    };

    let code = code(&client, &emulator, "github").await;
    let wrong_verifier = "x".repeat(43);
    for (form, status, error) in [
        (with(&code, "code_verifier", &wrong_verifier), 400, "invalid_grant"),
        (with(&code, "code_verifier", ""), 400, "invalid_grant"),
        (with(&code, "redirect_uri", "http://127.0.0.1:9/elsewhere"), 400, "invalid_grant"),
        (with(&code, "client_secret", "wrong"), 401, "invalid_client"),
        (base("no-such-code"), 400, "invalid_grant"),
    ] {
        let (got, body) = send(form).await;
        assert_eq!((got.as_u16(), text(&body, "error")), (status, error), "{body}");
    }
    // None of that used the code up; it works once, at its own provider only.
    let (status, body) = exchange(&client, &emulator, "linear", &code).await;
    assert_eq!((status, text(&body, "error")), (StatusCode::BAD_REQUEST, "invalid_grant"));
    let (status, body) = send(base(&code)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Another registered client cannot redeem this client's code.
    emulator.oauth_register_client(OauthClient {
        client_id: "other".into(),
        client_secret: Some("other-secret".into()),
        redirect_uris: vec![],
    });
    let code = self::code(&client, &emulator, "github").await;
    let (status, body) = token(
        &client,
        &emulator,
        "github",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", "other"),
            ("client_secret", "other-secret"),
        ],
    )
    .await;
    assert_eq!((status, text(&body, "error")), (StatusCode::BAD_REQUEST, "invalid_grant"));
    let (status, body) = token(&client, &emulator, "github", &[("grant_type", "password")]).await;
    assert_eq!((status, text(&body, "error")), (StatusCode::UNAUTHORIZED, "invalid_client"));
    let (status, body) = refresh(&client, &emulator, "github", "nope").await;
    assert_eq!((status, text(&body, "error")), (StatusCode::BAD_REQUEST, "invalid_grant"));
    let stats = emulator.stats();
    assert_eq!(stats.token_calls("authorization_code"), 8);
    assert_eq!(stats.token_calls("password"), 1);
    assert_eq!(stats.token_calls("refresh_token"), 1);
    emulator.shutdown().await;
}

#[tokio::test]
async fn the_authorize_endpoint_redirects_errors_only_to_a_known_client() {
    let emulator = start().await;
    let client = browser();

    // An unknown client or a bad redirect URI is shown, never redirected.
    for extra in [
        [("client_id", "nobody"), ("state", "s")],
        [("redirect_uri", "not a url"), ("state", "s")],
        [("redirect_uri", "http://127.0.0.1:9/cb#frag"), ("state", "s")],
        [("client_id", ""), ("state", "s")],
    ] {
        let response = authorize(&client, &emulator, "github", &extra).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{extra:?}");
        assert!(response.headers().get("location").is_none());
    }
    emulator.oauth_register_client(OauthClient {
        client_id: "fixed".into(),
        client_secret: None,
        redirect_uris: vec![REDIRECT.into()],
    });
    let response = authorize(
        &client,
        &emulator,
        "github",
        &[("client_id", "fixed"), ("redirect_uri", "http://127.0.0.1:9/other")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "an unregistered redirect URI");

    // Other mistakes go back to the client, with its state.
    for (extra, error) in [
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge_method", "")], "invalid_request"),
        (vec![("code_challenge", "tooshort")], "invalid_request"),
        (vec![("response_type", "token")], "unsupported_response_type"),
        (vec![("client_id", "fixed"), ("code_challenge", ""), ("code_challenge_method", "")], "invalid_request"),
    ] {
        let params = redirect_params(&authorize(&client, &emulator, "github", &extra).await);
        assert_eq!(params.get("error").map(String::as_str), Some(error), "{extra:?}");
        assert_eq!(params.get("state").map(String::as_str), Some("st-1"));
        assert!(!params.contains_key("code"));
    }

    // A confidential client may skip PKCE; then no verifier may be sent.
    let params = redirect_params(
        &authorize(&client, &emulator, "github", &[("code_challenge", ""), ("code_challenge_method", "")]).await,
    );
    let code = &params["code"];
    let (status, body) = exchange(&client, &emulator, "github", code).await;
    assert_eq!((status, text(&body, "error")), (StatusCode::BAD_REQUEST, "invalid_grant"));
    let (status, body) = token(
        &client,
        &emulator,
        "github",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", DEFAULT_OAUTH_CLIENT_ID),
            ("client_secret", DEFAULT_OAUTH_CLIENT_SECRET),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A public client authenticates with its id only, and needs PKCE.
    let params = redirect_params(&authorize(&client, &emulator, "github", &[("client_id", "fixed")]).await);
    let (status, body) = token(
        &client,
        &emulator,
        "github",
        &[
            ("grant_type", "authorization_code"),
            ("code", &params["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", "fixed"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    emulator.shutdown().await;
}

#[tokio::test]
async fn decisions_deny_or_pick_the_account_once() {
    let emulator = start().await;
    let client = browser();

    emulator.oauth_deny_next();
    let params = redirect_params(&authorize(&client, &emulator, "github", &[]).await);
    assert_eq!(params.get("error").map(String::as_str), Some("access_denied"));
    assert_eq!(params.get("state").map(String::as_str), Some("st-1"));
    assert!(!params.contains_key("code"));

    // Only the next one: then approvals again, as the chosen account, then the default.
    emulator.oauth_next_account("ana");
    let first = code(&client, &emulator, "github").await;
    let second = code(&client, &emulator, "github").await;
    let (_, ana) = exchange(&client, &emulator, "github", &first).await;
    let (_, default) = exchange(&client, &emulator, "github", &second).await;
    let (_, me) = github_user(&client, &emulator, text(&ana, "access_token")).await;
    assert_eq!((&me["id"], &me["login"]), (&json!("github-ana"), &json!("ana@example.test")));
    let (_, me) = github_user(&client, &emulator, text(&default, "access_token")).await;
    assert_eq!(me["id"], "github-emu-user");

    // The same through the control plane, for callers in another process.
    let control = |path: &str| format!("{}/_emulator/oauth/{path}", emulator.url());
    let sent = client.post(control("deny-next")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sent.status(), StatusCode::NO_CONTENT);
    let params = redirect_params(&authorize(&client, &emulator, "github", &[]).await);
    assert_eq!(params.get("error").map(String::as_str), Some("access_denied"));
    let sent = client
        .post(control("next-account"))
        .json(&json!({"login": "bo"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sent.status(), StatusCode::NO_CONTENT);
    let bad = client
        .post(control("next-account"))
        .json(&json!({"login": " "}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let code = code(&client, &emulator, "github").await;
    let sent = client
        .post(control("clients"))
        .json(&json!({"clientId": "remote", "clientSecret": "s"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sent.status(), StatusCode::NO_CONTENT);
    let (_, bo) = exchange(&client, &emulator, "github", &code).await;
    let listed: Vec<Value> = client
        .get(control("tokens"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2]["login"], "bo");
    assert_eq!(listed[2]["accessToken"], bo["access_token"]);
    let stats: Value = client
        .get(format!("{}/_emulator/stats", emulator.url()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stats["oauthTokenCalls"]["authorization_code"], 3);

    // A reset forgets pending decisions and counts, not tokens.
    emulator.oauth_deny_next();
    emulator.reset();
    assert!(redirect_params(&authorize(&client, &emulator, "github", &[]).await).contains_key("code"));
    assert_eq!(emulator.stats().token_calls("authorization_code"), 0);
    let (status, _) = github_user(&client, &emulator, text(&bo, "access_token")).await;
    assert_eq!(status, StatusCode::OK);
    emulator.shutdown().await;
}

#[tokio::test]
async fn refresh_tokens_rotate_and_access_tokens_expire() {
    let emulator = start().await;
    let client = browser();
    emulator.oauth_set_expires_in(1);
    let code = code(&client, &emulator, "github").await;
    let (_, first) = exchange(&client, &emulator, "github", &code).await;
    assert_eq!(first["expires_in"], 1);
    let (status, _) = github_user(&client, &emulator, text(&first, "access_token")).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = github_user(&client, &emulator, text(&first, "access_token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "an expired token is refused");
    assert_eq!(body["message"], "Bad credentials", "as the provider refuses");
    assert!(emulator.oauth_tokens()[0].expired);

    emulator.oauth_set_expires_in(3600);
    let (status, second) = refresh(&client, &emulator, "github", text(&first, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_ne!(second["access_token"], first["access_token"]);
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_eq!(second["scope"], "repo read:user");
    let (status, me) = github_user(&client, &emulator, text(&second, "access_token")).await;
    assert_eq!((status, &me["id"]), (StatusCode::OK, &json!("github-emu-user")), "the same account");

    // The used refresh token is spent; the new one works, once.
    let (status, body) = refresh(&client, &emulator, "github", text(&first, "refresh_token")).await;
    assert_eq!((status, text(&body, "error")), (StatusCode::BAD_REQUEST, "invalid_grant"));
    let (status, body) = refresh(&client, &emulator, "slack", text(&second, "refresh_token")).await;
    assert_eq!((status, text(&body, "error")), (StatusCode::BAD_REQUEST, "invalid_grant"), "another provider's");
    let (status, third) = refresh(&client, &emulator, "github", text(&second, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK, "{third}");
    assert_eq!(emulator.stats().token_calls("refresh_token"), 4);
    let grants: Vec<_> = emulator.oauth_tokens().into_iter().map(|t| t.grant_type).collect();
    assert_eq!(grants, ["authorization_code", "refresh_token", "refresh_token"]);

    emulator.oauth_expire_all();
    let (status, _) = github_user(&client, &emulator, text(&third, "access_token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    emulator.shutdown().await;
}

#[tokio::test]
async fn every_oauth_provider_answers_its_identity_for_the_account() {
    let emulator = start().await;
    let client = browser();
    let dir = default_dir(None);
    let plain = Catalog::load_dir(&dir, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}"));
    let urls = plain.providers().map(|p| (p.id.clone(), emulator.provider_url(&p.id))).collect();
    let catalog = Catalog::load_dir(&dir, &urls).unwrap_or_else(|e| panic!("{e}"));
    let ids = emulator.oauth_provider_ids();
    assert!(ids.len() >= 10 && ids.iter().any(|id| id == "github") && !ids.iter().any(|id| id == "stripe"));
    for id in &ids {
        let provider = catalog.provider(id).unwrap_or_else(|| panic!("{id}"));
        let Some(identity) = &provider.identity else { continue };
        let mut accounts = Vec::new();
        for login in ["ana", "bo"] {
            emulator.oauth_next_account(login);
            let code = code(&client, &emulator, id).await;
            let (status, tokens) = exchange(&client, &emulator, id, &code).await;
            assert_eq!(status, StatusCode::OK, "{id}: {tokens}");
            let mut request = client
                .request(
                    identity.method.parse().unwrap_or_else(|e| panic!("{e}")),
                    format!("{}{}", provider.base_url, identity.path),
                )
                .bearer_auth(text(&tokens, "access_token"));
            for (name, value) in &provider.headers {
                request = request.header(name.as_str(), value.as_str());
            }
            if let Some(body) = &identity.body {
                request = request.json(body);
            }
            let response = request.send().await.unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(response.status(), StatusCode::OK, "{id}");
            let body = json_of(response).await;
            let label = body.pointer(&identity.label).cloned();
            assert_eq!(label, Some(json!(format!("{login}@example.test"))), "{id}: {body}");
            let account = body.pointer(&identity.id).cloned().unwrap_or_else(|| panic!("{id}: {body}"));
            accounts.push(account);
        }
        assert_ne!(accounts[0], accounts[1], "{id}: two accounts are told apart");
    }
    emulator.shutdown().await;
}

#[tokio::test]
async fn faults_reach_the_token_endpoint() {
    let emulator = start().await;
    let client = browser();
    let code = code(&client, &emulator, "github").await;
    emulator.add_fault(Fault {
        method: Some("POST".into()),
        path: Some("/github/oauth/token".into()),
        kind: FaultKind::Status { status: 503, retry_after: None, body: None, headers: vec![] },
        times: 1,
    });
    let (status, _) = exchange(&client, &emulator, "github", &code).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = exchange(&client, &emulator, "github", &code).await;
    assert_eq!(status, StatusCode::OK, "a faulted call did not use the code: {body}");
    emulator.shutdown().await;
}
