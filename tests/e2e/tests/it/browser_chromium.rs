//! The dashboard in a real browser: Debian's headless Chromium driven over WebDriver
//! (chromedriver on a free port, fantoccini). One browser session walks a person's whole
//! path — sign up, connect an API-key app and an OAuth app, approve a pairing the agent
//! started, watch the agent's call appear in the history, revoke the device — and an
//! admin watches the queue view update itself while workers stop and start. Every page is
//! saved as a PNG under `target/screenshots/` (desktop and phone widths).

use clawlink_e2e::{Options, SANDBOX_TOKEN, Stack};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub(crate) const PHONE: (u32, u32) = (390, 844);
pub(crate) const DESKTOP: (u32, u32) = (1280, 1000);

/// chromedriver and the WebDriver session; chromedriver and its Chromium are killed on
/// drop (a test that fails never reaches `close`).
pub(crate) struct Chromium {
    pub(crate) client: Client,
    web: String,
    shots: PathBuf,
    driver: tokio::process::Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Chromium {
    pub(crate) async fn start(web: &str) -> Chromium {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "the browser tests need {path} (Debian package {package}); deploy/local/test installs it, \
                 or run: apt-get install chromium chromium-driver"
            );
        }
        let port = free_port();
        let log = std::env::temp_dir().join(format!("chromedriver-{port}.log"));
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, with the Chromium it starts: a failed test kills both.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let started = Instant::now();
        while http.get(format!("{url}/status")).send().await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not answer on {url}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut args = vec![
            "--headless=new".to_string(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--no-first-run".into(),
            format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
        ];
        // Chromium refuses to run as root without it (/proc/self belongs to our user).
        if std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false) {
            args.push("--no-sandbox".into());
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), json!({"binary": CHROMIUM, "args": args}));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a WebDriver session in Chromium");
        let shots = clawlink_e2e::bin_dir().parent().expect("target dir").join("screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Chromium { client, web: web.to_string(), shots, driver: driver }
    }

    pub(crate) async fn goto(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.web)).await.unwrap();
    }

    pub(crate) async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    pub(crate) async fn fill(&self, css: &str, text: &str) {
        let input = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }

    /// Clicks a link or button that loads a new page, and waits for that page: the old
    /// document is marked first, so a page at the same address counts as new.
    pub(crate) async fn click(&self, css: &str) {
        self.client.execute("window.__old_page = true;", vec![]).await.unwrap();
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
        let started = Instant::now();
        loop {
            let loaded: Value = self
                .client
                .execute("return window.__old_page !== true && document.readyState === 'complete';", vec![])
                .await
                .unwrap_or(Value::Bool(false));
            if loaded == Value::Bool(true) {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(15), "clicking {css} loaded no new page");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn text(&self, css: &str) -> String {
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).text().await.unwrap()
    }

    pub(crate) async fn body(&self) -> String {
        self.text("body").await
    }

    /// Waits (bounded) until `css`'s text satisfies `ok`, without reloading; returns it. A
    /// page still loading (no such element yet) is waited for too.
    pub(crate) async fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if ok(&text) {
                return text;
            }
            if started.elapsed() > Duration::from_secs(20) {
                panic!("{what}: {css} still reads {text:?}; the page: {}", self.body().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Resizes the window and waits until the page has laid itself out at the new width:
    /// a click computed on the old layout could land on another element.
    pub(crate) async fn resize(&self, (width, height): (u32, u32)) {
        self.client.set_window_size(width, height).await.unwrap();
        let started = Instant::now();
        loop {
            let settled: Value = self
                .client
                .execute_async(
                    "const done = arguments[arguments.length - 1];
                     requestAnimationFrame(() => requestAnimationFrame(() => done(window.innerWidth)));",
                    vec![],
                )
                .await
                .unwrap_or(Value::Null);
            if settled.as_u64().is_some_and(|w| w.abs_diff(u64::from(width)) <= 20) {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "the window did not take {width}px: {settled}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A screenshot of the whole page at `width` (the window grows to the page's height).
    pub(crate) async fn whole_page(&self, (width, height): (u32, u32), file: &str) {
        self.resize((width, height)).await;
        let tall: Value =
            self.client.execute("return document.documentElement.scrollHeight;", vec![]).await.unwrap_or(Value::Null);
        let tall = tall.as_u64().map_or(height, |h| (h as u32).clamp(height, 4000));
        if tall > height {
            self.resize((width, tall)).await;
        }
        std::fs::write(self.shots.join(file), self.client.screenshot().await.unwrap()).unwrap();
    }

    /// Saves the page at both widths as `<name>-desktop.png` and `<name>-phone.png`, and
    /// checks that nothing is wider than the phone's screen.
    pub(crate) async fn shoot(&self, name: &str) {
        self.resize(PHONE).await;
        let overflow: Value = self
            .client
            .execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth;", vec![])
            .await
            .unwrap();
        self.whole_page(PHONE, &format!("{name}-phone.png")).await;
        self.whole_page(DESKTOP, &format!("{name}-desktop.png")).await;
        self.resize(DESKTOP).await;
        assert!(overflow.as_i64().unwrap_or(0) <= 0, "{name}: the page is {overflow}px wider than a phone");
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Numbers on the page are plain integers.
fn number(text: &str) -> u64 {
    text.trim().parse().unwrap_or_else(|_| panic!("not a number: {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_and_an_admin_use_the_dashboard_in_chromium() {
    let mut stack = Stack::start(Options::default()).await;
    let browser = Chromium::start(&stack.web_url).await;
    let b = &browser;

    // Sign up.
    b.goto("/signup").await;
    b.fill("#display_name", "Ada").await;
    b.fill("#email", "ada@example.test").await;
    b.fill("#password", "a long enough password").await;
    b.shoot("01-signup").await;
    b.click("main form button[type=submit]").await;
    assert!(b.body().await.contains("Sign out"), "signed in after sign-up: {}", b.body().await);
    b.shoot("02-home").await;

    // Connect an API-key app from the catalog: search, pick, paste the key.
    b.goto("/connections/new").await;
    b.shoot("03-catalog").await;
    b.fill("#q", "notes").await;
    b.click("form[role=search] button").await;
    assert!(b.body().await.contains("Sandbox"), "the search finds the sandbox: {}", b.body().await);
    b.click("button[aria-label='Connect Sandbox']").await;
    assert!(b.path().await.starts_with("/connect/"), "{}", b.path().await);
    b.fill("#key", SANDBOX_TOKEN).await;
    b.shoot("04-api-key").await;
    b.click("main form button[type=submit]").await;
    assert!(b.body().await.contains("connected as sandbox@example.test"), "{}", b.body().await);

    // Connect an OAuth app: the browser follows the emulator's authorization server.
    b.goto("/connections/new?category=").await;
    b.click("button[aria-label='Connect GitHub']").await;
    let page = b.body().await;
    assert!(b.path().await.starts_with("/oauth/callback") && page.contains("GitHub"), "{page}");
    b.goto("/connections").await;
    let page = b.body().await;
    assert!(page.contains("GitHub") && page.contains("Sandbox"), "{page}");
    b.shoot("05-connections").await;
    // Delete asks first, naming what goes away; keep it.
    b.click("a.danger-link").await;
    let page = b.body().await;
    assert!(page.contains("Delete this connection?") && page.contains("stored credential"), "{page}");
    b.shoot("06-confirm-delete").await;
    b.click("form.actions a").await;
    assert_eq!(b.path().await, "/connections");

    // The agent starts pairing; the person approves in the browser.
    let (status, started) =
        stack.public_post("/api/openclaw/pair/start", json!({"deviceLabel": "Ada's laptop agent"})).await;
    assert_eq!(status, 200, "{started}");
    let token = started["sessionToken"].as_str().unwrap().to_string();
    let verifier = started["verifier"].as_str().unwrap().to_string();
    let pair_url = started["pairUrl"].as_str().unwrap().to_string();
    b.client.goto(&pair_url).await.unwrap();
    let page = b.body().await;
    assert!(page.contains("Ada's laptop agent") && page.contains(started["displayCode"].as_str().unwrap()), "{page}");
    b.shoot("07-pair").await;
    b.click("button[value=approve]").await;
    assert!(b.body().await.contains("go back to your agent"), "{}", b.body().await);
    b.shoot("08-paired").await;
    let exchange = format!("/api/openclaw/pair/sessions/{token}/exchange");
    let (status, exchanged) = stack.public_post(&exchange, json!({"verifier": verifier})).await;
    assert_eq!(status, 200, "{exchanged}");
    let api_key = exchanged["apiKey"].as_str().unwrap().to_string();
    let finalize = format!("/api/openclaw/pair/sessions/{token}/finalize");
    assert_eq!(stack.public_post(&finalize, json!({"verifier": verifier})).await.0, 200);

    // The agent's call appears in the history.
    let (status, done) =
        stack.execute(&api_key, "sandbox_echo", json!({"arguments": {"message": "hello from Chromium"}}), &[]).await;
    assert_eq!(status, 200, "{done}");
    let execution = done["executionId"].as_str().unwrap().to_string();
    // The history is a plain page: the person reloads until the row is final (the worker
    // records it just after the agent has its answer).
    b.goto("/executions").await;
    let started = Instant::now();
    let status = "table td[data-label=Status]";
    while b.client.find(Locator::Css(status)).await.is_err() || b.text(status).await != "succeeded" {
        assert!(started.elapsed() < Duration::from_secs(10), "the call never showed: {}", b.body().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
        b.client.refresh().await.unwrap();
    }
    assert_eq!(b.text("table td[data-label=Tool]").await, "sandbox_echo");
    // Filtered by time: nothing up to yesterday, the call from today on.
    let today = time::OffsetDateTime::now_utc().date();
    b.goto(&format!("/executions?until={}", today.previous_day().unwrap())).await;
    assert!(b.body().await.contains("No execution matches."), "{}", b.body().await);
    b.goto(&format!("/executions?since={today}&until={today}")).await;
    assert_eq!(b.text("table td[data-label=Tool]").await, "sandbox_echo");
    b.shoot("09-executions").await;
    b.goto(&format!("/executions/{execution}")).await;
    let page = b.body().await;
    assert!(page.contains("hello from Chromium") && page.contains("Waiting in queue"), "{page}");
    assert!(!page.contains(SANDBOX_TOKEN), "never a secret");
    b.shoot("10-execution").await;

    // Revoke the device: the agent is refused.
    b.goto("/devices").await;
    let page = b.body().await;
    assert!(page.contains("Ada's laptop agent") && page.contains("Last used"), "{page}");
    b.shoot("11-devices").await;
    assert_eq!(stack.get(&api_key, "/api/agent/whoami").await.0, 200);
    b.click("button[aria-label=\"Revoke Ada's laptop agent\"]").await;
    assert!(b.body().await.contains("Revoked"), "{}", b.body().await);
    // The api caches credentials for under a second.
    let started = Instant::now();
    loop {
        let (status, body) = stack.get(&api_key, "/api/agent/whoami").await;
        if status == 401 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "a revoked device is still let in: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The admin queue view: not there for a non-admin…
    b.goto("/admin/queues").await;
    assert!(b.body().await.contains("Not found"), "{}", b.body().await);
    clawlink_api::commands::make_admin(&stack.env, &["ada@example.test".into()]).await.unwrap();
    // …and live for an admin: with the workers stopped, async calls pile up in the bulk
    // lane; the page shows the depth rise, then fall when a worker starts — no reload.
    b.goto("/admin/queues").await;
    b.wait_text("#live-state", "the view goes live", |t| t == "live").await;
    assert_eq!(number(&b.text("#q-bulk").await), 0);
    let (agent, _) = stack.sandbox_user("agent@example.test").await;
    stack.stop_workers().await;
    b.wait_text("#c-bulk", "consumers drop to 0", |t| t == "0").await;
    // One call whose worker died with it: the broker dead-letters it.
    let dead = crate::browser_admin::dead_letter(&stack, &agent.api_key, "lost once").await;
    b.wait_text("#q-dead", "the dead letter shows", |t| t.trim() == "1").await;
    for i in 0..12 {
        let body = json!({"arguments": {"message": format!("bulk {i}")}, "async": true});
        assert_eq!(stack.execute(&agent.api_key, "sandbox_echo", body, &[]).await.0, 202);
    }
    b.wait_text("#q-bulk", "bulk depth rises to 12", |t| t.trim() == "12").await;
    let updated = b.text("#updated").await;
    b.wait_text("#updated", "the view keeps updating", |t| t != updated).await;
    b.shoot("12-admin-backlog").await;
    stack.start_worker().await;
    b.wait_text("#q-bulk", "bulk depth falls to 0", |t| t.trim() == "0").await;
    b.wait_text("#c-bulk", "a consumer is back", |t| number(t) >= 1).await;
    let published = b.wait_text("#rate-publish", "the publish rate shows the calls", |t| t != "0.0/s").await;
    assert!(published.ends_with("/s"), "{published}");
    // The chart was drawn from what the page saw.
    let lines: Value =
        b.client.execute("return document.querySelectorAll('#depth-chart polyline').length;", vec![]).await.unwrap();
    assert_eq!(lines.as_u64(), Some(4), "four series in the depth chart");
    b.shoot("13-admin-drained").await;

    // The dead letter is listed; replay it from the keyboard (Tab to the button, Enter).
    b.goto("/admin/queues").await;
    let page = b.body().await;
    assert!(page.contains(&dead) && page.contains("rejected"), "{page}");
    b.shoot("14-admin-dead-letter").await;
    let replay = b.client.find(Locator::Css(&format!("button[aria-label='Replay {dead}']"))).await.unwrap();
    replay.send_keys("\u{e007}").await.unwrap(); // WebDriver's Enter key
    b.wait_text("main", "the replay is confirmed", |t| t.contains("Replayed")).await;
    let (_, polled) = stack.get(&agent.api_key, &format!("/api/executions/{dead}?waitMs=10000")).await;
    assert_eq!(polled["status"], "succeeded", "the replayed call ran: {polled}");
    b.wait_text("#q-dead", "the dead-letter queue is empty", |t| t.trim() == "0").await;

    browser.client.clone().close().await.unwrap();
    stack.finish().await;
}
