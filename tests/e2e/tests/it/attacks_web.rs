//! Attacks on the web front beyond `attacks.rs`, over real ports: sign-in cannot be turned
//! into an open redirect, passwords cannot be guessed at leisure nor accounts made in
//! bulk (throttles per account and per client address, the address read through a trusted
//! proxy), a burst of sign-ins does not stall the other pages, every answer carries the
//! security headers, and text that is not UTF-8 is refused.

use clawlink_e2e::browser::{Browser, Page};
use clawlink_e2e::{Options, Stack};
use std::time::{Duration, Instant};

/// A stack whose web front trusts the test's loopback address as a proxy, so each test
/// client can be a different address (`Browser::forwarded_for`).
async fn behind_a_proxy() -> Stack {
    Stack::start(Options {
        workers: 0,
        env: vec![("CLAWLINK_TRUSTED_PROXIES".into(), "127.0.0.1".into())],
        ..Default::default()
    })
    .await
}

fn client(stack: &Stack, ip: &str) -> Browser {
    let mut browser = Browser::new(&stack.web_url);
    browser.forwarded_for = Some(ip.to_string());
    browser
}

/// Posts the sign-in form, its token read from a fresh copy of the form.
async fn sign_in(browser: &mut Browser, email: &str, password: &str) -> Page {
    browser.sign_in(email, password).await
}

fn retry_after(page: &Page) -> u64 {
    page.headers.get("retry-after").expect("Retry-After").to_str().unwrap().parse().unwrap()
}

async fn count(stack: &Stack, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(&stack.db).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_redirects_only_to_a_path_on_this_site() {
    let stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let mut person = Browser::new(&stack.web_url);
    assert_eq!(person.sign_up("redirect@example.test", "redirect password 1").await.status, 303);
    // Signed in, /signin goes straight to `next`. A tab is dropped by browsers, so
    // `/\t/evil.example` is `//evil.example`; `/%01` used to be a 500.
    for (next, expected) in [
        ("/%09/evil.example", "/"),
        ("/%0A/evil.example", "/"),
        ("%2F%2Fevil.example", "/"),
        ("/%5Cevil.example", "/"),
        ("https://evil.example/", "/"),
        ("/%01", "/"),
        ("/a%01b", "/a%01b"),
        ("/pair/abc%3Fx%3D1", "/pair/abc?x=1"),
    ] {
        let page = person.get(&format!("/signin?next={next}")).await;
        assert_eq!((page.status, page.location.as_deref()), (303, Some(expected)), "next={next}: {}", page.body);
    }
    // The form's `next` after a sign-in.
    let mut again = Browser::new(&stack.web_url);
    let form = again.get("/signin").await;
    let fields = [
        ("csrf", form.csrf()),
        ("email", "redirect@example.test".into()),
        ("password", "redirect password 1".into()),
        ("next", "/\t/evil.example".into()),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page = again.post("/signin", &fields).await;
    assert_eq!((page.status, page.location.as_deref()), (303, Some("/")), "{}", page.body);
    stack.finish().await;
}

/// 30 wrong passwords in a row used to be followed by a working sign-in: now the account
/// is refused after 10 (the right password too) with a 429 page that says when to come
/// back, and an address that tried 50 wrong passwords is refused whatever the account —
/// while another address signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_is_throttled_per_account_and_per_address() {
    let stack = behind_a_proxy().await;
    stack.user("victim@example.test").await;
    stack.user("bystander@example.test").await;
    let mut guesser = client(&stack, "198.51.100.7");
    let mut statuses = Vec::new();
    for n in 0..30 {
        statuses.push(sign_in(&mut guesser, "victim@example.test", &format!("guess {n}")).await.status);
    }
    assert_eq!(statuses[..10], [401; 10], "{statuses:?}");
    assert_eq!(statuses[10..], [429; 20], "{statuses:?}");
    let refused = sign_in(&mut guesser, "victim@example.test", "pw").await;
    assert_eq!(refused.status, 429, "the right password after 30 wrong ones: {}", refused.body);
    assert!(refused.body.contains("Too many attempts") && refused.body.contains("Try again in"), "{}", refused.body);
    let left = retry_after(&refused);
    assert!((800..=900).contains(&left), "Retry-After is the time left in the 15-minute window: {left}");
    assert!(!guesser.cookies.contains_key("clawlink_session"));
    assert_eq!(count(&stack, "SELECT count(*) FROM web_sessions").await, 0, "no session was made");
    // The account is refused from anywhere until then: the guesser may change address.
    assert_eq!(sign_in(&mut client(&stack, "198.51.100.9"), "victim@example.test", "pw").await.status, 429);

    // Per address: 40 more wrong passwords (for accounts that do not exist) use up the
    // guesser's 50; then even a right password for another account is refused there.
    for n in 0..40 {
        let page = sign_in(&mut guesser, &format!("nobody{n}@example.test"), "wrong").await;
        assert_eq!(page.status, 401, "attempt {n}: {}", page.body);
    }
    assert_eq!(sign_in(&mut guesser, "bystander@example.test", "pw").await.status, 429);
    let mut bystander = client(&stack, "198.51.100.8");
    let page = sign_in(&mut bystander, "bystander@example.test", "pw").await;
    assert_eq!((page.status, page.location.as_deref()), (303, Some("/")), "{}", page.body);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ups_are_throttled_per_address() {
    let stack = behind_a_proxy().await;
    let mut bulk = client(&stack, "203.0.113.20");
    for n in 0..20 {
        bulk.cookies.clear();
        let page = bulk.sign_up(&format!("bulk{n}@example.test"), "bulk password 1").await;
        assert_eq!(page.status, 303, "sign-up {n}: {}", page.body);
    }
    bulk.cookies.clear();
    let refused = bulk.sign_up("bulk20@example.test", "bulk password 1").await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!((1..=3600).contains(&retry_after(&refused)));
    assert_eq!(count(&stack, "SELECT count(*) FROM users").await, 20, "the refused sign-up made no account");
    let page = client(&stack, "203.0.113.21").sign_up("elsewhere@example.test", "elsewhere password").await;
    assert_eq!(page.status, 303, "{}", page.body);
    stack.finish().await;
}

/// Password hashes run off the async threads: while 80 sign-ins hash at once, the other
/// pages answer about as fast as when idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_sign_ins_does_not_stall_other_pages() {
    let stack = behind_a_proxy().await;
    // Each from its own address, so no throttle stops any of them.
    let mut forms = Vec::new();
    for n in 0..80 {
        let mut browser = client(&stack, &format!("192.0.2.{}", n + 1));
        let csrf = browser.get("/signin").await.csrf();
        forms.push((browser, csrf));
    }
    let home = format!("{}/", stack.web_url);
    let page_latency = || {
        let (http, home) = (stack.http.clone(), home.clone());
        async move {
            let started = Instant::now();
            assert_eq!(http.get(&home).send().await.unwrap().status(), 200);
            started.elapsed()
        }
    };
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(page_latency().await);
    }

    let started = Instant::now();
    let burst = tokio::spawn(async move {
        let attempts = forms.into_iter().enumerate().map(|(n, (mut browser, csrf))| async move {
            let email = format!("burst{n}@example.test");
            let fields = [("csrf", csrf.as_str()), ("email", &email), ("password", "wrong password"), ("next", "/")];
            browser.post("/signin", &fields).await.status
        });
        futures_util::future::join_all(attempts).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut during = Vec::new();
    while !burst.is_finished() {
        during.push(page_latency().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let statuses = burst.await.unwrap();
    let burst_took = started.elapsed();
    assert!(statuses.iter().all(|&s| s == 401), "{statuses:?}");
    during.sort();
    let slowest = *during.last().expect("pages were asked during the burst");
    let median = during[during.len() / 2];
    eprintln!(
        "idle {idle:?}; during a {burst_took:?} burst: median {median:?}, slowest {slowest:?} of {}",
        during.len()
    );
    // Real work, long enough to be sampled several times (40 sign-ins once took only
    // 570 ms on an idle machine, so the burst is 80).
    assert!(burst_took > Duration::from_millis(500), "the burst was real work: {burst_took:?}");
    assert!(during.len() >= 4, "pages were asked only {} times during the burst", during.len());
    assert!(median < Duration::from_millis(150), "median page latency during the burst: {median:?}");
    assert!(slowest < Duration::from_millis(500), "slowest page during the burst: {slowest:?}");
    stack.finish().await;
}

/// Every answer of the web front, pages and errors alike, forbids framing and sniffing
/// and keeps its address from other sites.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_the_security_headers() {
    let stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let mut visitor = Browser::new(&stack.web_url);
    let mut pages = vec![
        ("home", visitor.get("/").await),
        ("sign-in form", visitor.get("/signin").await),
        ("stylesheet", visitor.get("/static/style.css").await),
        ("not found", visitor.get("/no/such/page").await),
        ("to sign-in", visitor.get("/devices").await),
        ("NUL", visitor.get("/connections/new?q=%00").await),
        ("form expired", visitor.post("/signin", &[("csrf", "forged")]).await),
    ];
    let mut wrong = Browser::new(&stack.web_url);
    for _ in 0..11 {
        let page = wrong.sign_in("nobody@example.test", "wrong").await;
        if page.status == 429 {
            pages.push(("throttled", page));
            break;
        }
    }
    for (what, page) in &pages {
        let header = |name: &str| page.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        assert_eq!(header("content-security-policy"), "frame-ancestors 'none'", "{what} ({})", page.status);
        assert_eq!(header("x-frame-options"), "DENY", "{what}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
        assert_eq!(header("referrer-policy"), "same-origin", "{what}");
    }
    assert_eq!(pages.last().map(|(what, _)| *what), Some("throttled"), "the 429 page was among them");
    stack.finish().await;
}

/// Bytes that are not UTF-8 in a form, a query or a path are a 400 page, and nothing is
/// written (they used to be stored as U+FFFD: an email other than the one typed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_is_not_utf8_is_refused() {
    let stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let mut stranger = Browser::new(&stack.web_url);
    let csrf = stranger.get("/signup").await.csrf();
    for email in [b"a%FF@x.test".to_vec(), b"b\xff@x.test".to_vec(), b"c%C3@x.test".to_vec()] {
        let mut body = format!("csrf={csrf}&password=long+password+1&display_name=x&email=").into_bytes();
        body.extend_from_slice(&email);
        let page = stranger.post_raw("/signup", body).await;
        assert_eq!(page.status, 400, "{}: {}", String::from_utf8_lossy(&email), page.body);
        assert!(page.body.contains("not valid UTF-8"), "{}", page.body);
    }
    assert_eq!(count(&stack, "SELECT count(*) FROM users").await, 0);
    let mut person = Browser::new(&stack.web_url);
    person.sign_up("utf8@example.test", "utf8 password 1").await;
    for path in ["/executions?tool=%FF", "/connections/new?q=%E2%82", "/pair/%FF"] {
        let page = person.get(path).await;
        assert_eq!(page.status, 400, "{path}: {}", page.body);
        let html = page.headers.get("content-type").unwrap().to_str().unwrap();
        assert!(html.starts_with("text/html"), "{path}: {html}");
    }
    // Text in other scripts is fine.
    assert_eq!(person.get("/connections/new?q=J%C3%BCrgen").await.status, 200);
    stack.finish().await;
}
