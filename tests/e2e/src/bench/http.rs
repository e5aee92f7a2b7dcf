//! The HTTP rows: the emulator directly, and ClawLink's execute and executions routes.

use super::stats::{CellResult, ErrorLog};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

const SYNC_BODY: &[u8] = br#"{"arguments":{"message":"x"}}"#;
const ASYNC_BODY: &[u8] = br#"{"arguments":{"message":"x"},"async":true}"#;

/// One client for every row: keep-alive, no proxy, Nagle off.
pub fn client(call_timeout: Duration) -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1024)
        .pool_idle_timeout(Duration::from_secs(90))
        .connect_timeout(Duration::from_secs(5))
        .timeout(call_timeout)
        .build()?)
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else {
        text.to_string()
    }
}

#[derive(Clone)]
pub struct Direct {
    http: reqwest::Client,
    url: Arc<str>,
    auth: HeaderValue,
}

impl Direct {
    pub fn new(http: reqwest::Client, emulator_url: &str, token: &str) -> anyhow::Result<Self> {
        Ok(Self {
            http,
            url: format!("{}/echo?message=x", emulator_url.trim_end_matches('/')).into(),
            auth: HeaderValue::from_str(&format!("Bearer {token}"))?,
        })
    }

    pub async fn call(&self) -> Result<(), String> {
        let response = self
            .http
            .get(&*self.url)
            .header(AUTHORIZATION, self.auth.clone())
            .send()
            .await
            .map_err(|e| format!("GET /echo: {e}"))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| format!("GET /echo body: {e}"))?;
        if status != StatusCode::OK {
            return Err(format!("GET /echo answered {status}: {}", snippet(&body)));
        }
        Ok(())
    }
}

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    execute_url: Arc<str>,
    executions_url: Arc<str>,
    key: HeaderValue,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecuteAnswer {
    #[serde(default)]
    ok: Option<bool>,
    #[serde(default)]
    execution_id: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

/// A finished execution's state, as the poll saw it.
pub enum Polled {
    Succeeded,
    Failed(String),
    Pending,
}

impl Api {
    pub fn new(http: reqwest::Client, api_url: &str, key: &str) -> anyhow::Result<Self> {
        let base = api_url.trim_end_matches('/');
        Ok(Self {
            http,
            execute_url: format!("{base}/api/tools/sandbox_echo/execute").into(),
            executions_url: format!("{base}/api/executions").into(),
            key: HeaderValue::from_str(key).map_err(|_| anyhow::anyhow!("the API key is not a valid header value"))?,
        })
    }

    /// The same client calling another tool with the same arguments (`{"message": …}`).
    pub fn for_tool(&self, tool: &str) -> Self {
        let base = self.execute_url.trim_end_matches("/api/tools/sandbox_echo/execute");
        Self { execute_url: format!("{base}/api/tools/{tool}/execute").into(), ..self.clone() }
    }

    async fn post(&self, body: &'static [u8]) -> Result<(StatusCode, Vec<u8>), String> {
        let response = self
            .http
            .post(&*self.execute_url)
            .header("x-clawlink-api-key", self.key.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("POST execute: {e}"))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| format!("POST execute body: {e}"))?;
        Ok((status, body.to_vec()))
    }

    /// A sync call: 200 with `ok: true`.
    pub async fn sync_call(&self) -> Result<(), String> {
        let (status, body) = self.post(SYNC_BODY).await?;
        if status != StatusCode::OK {
            return Err(format!("sync execute answered {status}: {}", snippet(&body)));
        }
        match serde_json::from_slice::<ExecuteAnswer>(&body) {
            Ok(ExecuteAnswer { ok: Some(true), .. }) => Ok(()),
            _ => Err(format!("sync execute answered 200 without ok: true: {}", snippet(&body))),
        }
    }

    /// An async submit: 202 with an execution id.
    pub async fn submit(&self) -> Result<String, String> {
        let (status, body) = self.post(ASYNC_BODY).await?;
        if status != StatusCode::ACCEPTED {
            return Err(format!("async execute answered {status}: {}", snippet(&body)));
        }
        match serde_json::from_slice::<ExecuteAnswer>(&body) {
            Ok(ExecuteAnswer { execution_id: Some(id), .. }) => Ok(id),
            _ => Err(format!("async execute answered 202 without executionId: {}", snippet(&body))),
        }
    }

    /// `GET /api/executions/{id}?waitMs=…`.
    pub async fn poll(&self, id: &str, wait_ms: u64) -> Result<Polled, String> {
        let response = self
            .http
            .get(format!("{}/{id}?waitMs={wait_ms}", self.executions_url))
            .header("x-clawlink-api-key", self.key.clone())
            .send()
            .await
            .map_err(|e| format!("GET execution: {e}"))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| format!("GET execution body: {e}"))?;
        if status != StatusCode::OK {
            return Err(format!("GET execution answered {status}: {}", snippet(&body)));
        }
        let answer: ExecuteAnswer =
            serde_json::from_slice(&body).map_err(|_| format!("GET execution: unreadable body: {}", snippet(&body)))?;
        Ok(match (answer.status.as_deref(), answer.ok) {
            (Some("succeeded"), Some(true)) => Polled::Succeeded,
            (Some("succeeded" | "failed"), _) => Polled::Failed(snippet(&body)),
            _ => Polled::Pending,
        })
    }

    /// Polls until the execution is final, at most `bound`.
    pub async fn wait_final(&self, id: &str, bound: Duration) -> Result<(), String> {
        let deadline = Instant::now() + bound;
        loop {
            let wait_ms = deadline.saturating_duration_since(Instant::now()).as_millis().min(5000) as u64;
            match self.poll(id, wait_ms).await? {
                Polled::Succeeded => return Ok(()),
                Polled::Failed(body) => return Err(format!("execution failed: {body}")),
                Polled::Pending if Instant::now() >= deadline => {
                    return Err(format!("execution not final after {bound:?}"));
                }
                Polled::Pending => {}
            }
        }
    }
}

/// `N` async calls: `concurrency` tasks submit them while `concurrency` other tasks poll
/// each (in submission order) until final. The rate is completions over the time from
/// the first submit to the last observed completion; a latency is submit → observed final.
pub async fn async_completion(
    api: &Api,
    concurrency: usize,
    n: usize,
    per_call_bound: Duration,
    give_up_at: Instant,
) -> CellResult {
    let errors = ErrorLog::default();
    let next = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::unbounded_channel::<(String, Instant)>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let t0 = Instant::now();
    let mut submitters = Vec::new();
    for _ in 0..concurrency {
        let api = api.clone();
        let next = next.clone();
        let tx = tx.clone();
        let errors = errors.clone();
        submitters.push(tokio::spawn(async move {
            let mut failed = 0u64;
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let start = Instant::now();
                if start >= give_up_at {
                    failed += 1;
                    errors.note("async submit: the cell ran out of time".into());
                    continue;
                }
                match tokio::time::timeout(per_call_bound, api.submit()).await {
                    Ok(Ok(id)) => {
                        let _ = tx.send((id, start));
                    }
                    Ok(Err(e)) => {
                        failed += 1;
                        errors.note(e);
                    }
                    Err(_) => {
                        failed += 1;
                        errors.note("async submit: no answer in time".into());
                    }
                }
            }
            failed
        }));
    }
    drop(tx);
    let mut pollers = Vec::new();
    for _ in 0..concurrency {
        let api = api.clone();
        let rx = rx.clone();
        let errors = errors.clone();
        pollers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failed = 0u64;
            let mut last: Option<Instant> = None;
            loop {
                let Some((id, submitted)) = rx.lock().await.recv().await else {
                    break;
                };
                let bound = per_call_bound
                    .saturating_sub(submitted.elapsed())
                    .min(give_up_at.saturating_duration_since(Instant::now()));
                match api.wait_final(&id, bound).await {
                    Ok(()) => {
                        let end = Instant::now();
                        latencies.push((end - submitted).as_micros().min(u128::from(u32::MAX)) as u32);
                        last = Some(end);
                    }
                    Err(e) => {
                        failed += 1;
                        errors.note(e);
                    }
                }
            }
            (latencies, failed, last)
        }));
    }
    let mut result = CellResult::default();
    for s in submitters {
        match s.await {
            Ok(failed) => result.errors += failed,
            Err(e) => errors.note(format!("submit task failed: {e}")),
        }
    }
    let mut last_end = t0;
    for p in pollers {
        match p.await {
            Ok((latencies, failed, last)) => {
                result.ok += latencies.len() as u64;
                result.latencies_us.extend(latencies);
                result.errors += failed;
                if let Some(l) = last {
                    last_end = last_end.max(l);
                }
            }
            Err(e) => errors.note(format!("poll task failed: {e}")),
        }
    }
    result.elapsed = last_end - t0;
    result.latencies_us.sort_unstable();
    result.error_samples = errors.take();
    result
}
