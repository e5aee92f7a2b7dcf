//! Every catalog provider except the sandbox, played from data: the catalog says which
//! methods and paths exist, how the provider authenticates and where each tool's
//! arguments go; `fixtures/<provider>.toml` holds what the provider answers (see
//! `fixtures.rs`).
//!
//! Each provider is nested under `/<provider id>`, so a worker reaches it with
//! `CLAWLINK_PROVIDER_<ID>_BASE_URL=http://127.0.0.1:PORT/<id>`. A request passes, in
//! order:
//!
//! 1. the gate (`gate.rs`): the credential where the provider's `auth` puts it, holding
//!    one of the emulator's accepted tokens, else the provider's `unauthorized` answer;
//!    then any injected fault;
//! 2. the provider's fixed `headers` (such as `Notion-Version`), then the endpoint's
//!    request shape (`shape.rs`), else the provider's `bad_request` answer. Tools that
//!    share a method and path (GitHub's update and close issue) are told apart by the
//!    arguments they require, the most demanding first; GraphQL tools by their query;
//! 3. the canned answer of the tool (or the identity endpoint). A write or destructive
//!    tool counts a side effect under the provider's idempotency header, if it has one.
//!    A request signed in with an access token from the emulator's authorization server
//!    gets the identity of that token's account (see `oauth.rs`).
//!
//! Next to its API, each provider serves the authorization server under `/<id>/oauth/`.

mod fixtures;
mod shape;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter};
use clawlink_common::catalog::{Auth, BodyEncoding, Catalog, Mode, Provider};

use self::fixtures::{Canned, ProviderFixtures};
use self::shape::{Incoming, Shape};
use crate::error::error_body;
use crate::gate::{self, Account, Gate, Scheme};
use crate::record::Served;
use crate::state::AppState;

/// The provider served at the emulator's root by its own module, not from the catalog.
const SANDBOX: &str = "sandbox";

/// Bodies larger than this are refused; tool calls are small.
const MAX_BODY_BYTES: usize = 1 << 20;

/// The catalog and the canned answers, loaded once; [`router`](crate::router) serves them.
#[derive(Debug)]
pub struct Providers {
    catalog: Catalog,
    fixtures: BTreeMap<String, ProviderFixtures>,
    fixtures_dir: PathBuf,
}

impl Providers {
    /// Load the catalog in `catalog_dir` (without base URL overrides) and the fixtures in
    /// `fixtures_dir`. A file that does not load is an error naming it; a tool without a
    /// canned answer is not (see [`Providers::problems`]).
    pub fn load(catalog_dir: &Path, fixtures_dir: &Path) -> anyhow::Result<Providers> {
        let catalog = Catalog::load_dir(catalog_dir, &BTreeMap::new())
            .with_context(|| format!("loading the catalog in {}", catalog_dir.display()))?;
        let fixtures = fixtures::load_dir(fixtures_dir)?;
        Ok(Providers { catalog, fixtures, fixtures_dir: fixtures_dir.to_path_buf() })
    }

    /// [`Providers::load`], once per pair of folders in this process: tests start an
    /// emulator each, and compiling the catalog's schemas is the slow part of a start.
    pub fn load_shared(catalog_dir: &Path, fixtures_dir: &Path) -> anyhow::Result<Arc<Providers>> {
        type Loaded = Vec<((PathBuf, PathBuf), Arc<Providers>)>;
        static LOADED: Mutex<Loaded> = Mutex::new(Vec::new());
        let key = (catalog_dir.to_path_buf(), fixtures_dir.to_path_buf());
        let mut loaded = LOADED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, providers)) = loaded.iter().find(|(k, _)| *k == key) {
            return Ok(providers.clone());
        }
        let providers = Arc::new(Self::load(catalog_dir, fixtures_dir)?);
        loaded.push((key, providers.clone()));
        Ok(providers)
    }

    /// The catalog's default folder and this crate's `fixtures/`.
    pub fn load_default() -> anyhow::Result<Providers> {
        Self::load(&clawlink_common::catalog::default_dir(None), &default_fixtures_dir())
    }

    /// The ids of the providers served from the catalog, each under `/<id>`.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.emulated().map(|p| p.id.as_str())
    }

    /// The ids of the served providers whose catalog auth is OAuth 2.
    pub fn oauth_ids(&self) -> impl Iterator<Item = &str> {
        self.emulated().filter(|p| matches!(p.auth, Auth::Oauth2 { .. })).map(|p| p.id.as_str())
    }

    /// What is missing or wrong in the fixtures for this catalog, one line each: a tool
    /// or identity without a canned answer (it would be answered `501`), an answer for a
    /// tool the catalog does not have, an identity or `result` pointer that does not
    /// resolve in its answer. Empty when every tool can be executed end to end.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for provider in self.emulated() {
            let id = &provider.id;
            let file = self.fixture_file(id);
            let Some(fx) = self.fixtures.get(id) else {
                problems.push(format!(
                    "{file} is missing: {} tools and the identity of {id} have no answer",
                    provider.tools.len()
                ));
                continue;
            };
            for tool in &provider.tools {
                let action = &tool.action;
                match fx.tools.get(action) {
                    None => problems.push(format!("{file} has no [tools.{action}] for {id}_{action}")),
                    Some(canned) => {
                        if let Some(pointer) = &tool.result
                            && canned.body.as_ref().and_then(|b| b.pointer(pointer)).is_none()
                        {
                            problems.push(format!(
                                "{file} [tools.{action}]: the tool's result pointer {pointer} \
                                 does not resolve in the body"
                            ));
                        }
                    }
                }
            }
            for action in fx.tools.keys() {
                if !provider.tools.iter().any(|t| &t.action == action) {
                    problems.push(format!("{file} [tools.{action}]: {id} has no tool {action:?} in the catalog"));
                }
            }
            match (&provider.identity, &fx.identity) {
                (Some(_), None) => problems.push(format!("{file} has no [identity]")),
                (Some(identity), Some(canned)) => {
                    for pointer in [&identity.id, &identity.label] {
                        if canned.body.as_ref().and_then(|b| b.pointer(pointer)).is_none() {
                            problems.push(format!(
                                "{file} [identity]: the catalog's pointer {pointer} does not \
                                 resolve in the body"
                            ));
                        }
                    }
                }
                (None, Some(_)) => {
                    problems.push(format!("{file} [identity]: {id} declares no identity in the catalog"))
                }
                (None, None) => {}
            }
        }
        for id in self.fixtures.keys() {
            if id == SANDBOX || self.catalog.provider(id).is_none() {
                problems.push(format!(
                    "{}: there is no provider {id:?} in the catalog to answer for",
                    self.fixture_file(id)
                ));
            }
        }
        problems
    }

    /// Nest every provider's router, gated, under `/<id>`.
    pub(crate) fn mount(&self, mut app: Router<AppState>, state: &AppState) -> anyhow::Result<Router<AppState>> {
        for provider in self.emulated() {
            let router =
                self.provider_router(provider, state).with_context(|| format!("serving provider {}", provider.id))?;
            let router = router.merge(crate::oauth::router(&provider.id, state));
            app = app.nest(&format!("/{}", provider.id), router);
        }
        Ok(app)
    }

    fn emulated(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.catalog.providers().filter(|p| p.id != SANDBOX)
    }

    fn fixture_file(&self, id: &str) -> String {
        self.fixtures_dir.join(format!("{id}.toml")).display().to_string()
    }

    fn provider_router(&self, provider: &Provider, state: &AppState) -> anyhow::Result<Router<AppState>> {
        let id = &provider.id;
        let fx = self.fixtures.get(id);
        let file = self.fixture_file(id);
        let errors =
            fx.map_or_else(default_errors, |fx| (fx.errors.unauthorized.clone(), fx.errors.bad_request.clone()));
        let spec = Arc::new(ProviderSpec {
            encoding: provider.body_encoding,
            fixed_headers: provider.headers.keys().map(|h| h.parse()).collect::<Result<_, _>>()?,
            idempotency_header: provider.idempotency_header.as_deref().map(str::parse).transpose()?,
            request_id_header: provider.request_id_header.as_deref().map(str::parse).transpose()?,
            bad_request: errors.1,
        });

        // pattern → method → endpoints, most demanding first.
        let mut routes: BTreeMap<String, BTreeMap<Method, Vec<Endpoint>>> = BTreeMap::new();
        for tool in &provider.tools {
            let name = format!("{id}_{}", tool.action);
            let endpoint = Endpoint {
                provider: spec.clone(),
                writes: tool.mode != Mode::Read,
                shape: Shape::of_tool(tool, provider.body_encoding).with_context(|| format!("tool {name}"))?,
                answer: fx.and_then(|fx| fx.tools.get(&tool.action)).cloned(),
                missing: format!("add [tools.{}] to {file}", tool.action),
                name,
                identity: None,
            };
            routes
                .entry(route_pattern(&tool.path).with_context(|| format!("tool {id}_{}", tool.action))?)
                .or_default()
                .entry(tool.method.parse()?)
                .or_default()
                .push(endpoint);
        }
        if let Some(identity) = &provider.identity {
            let path = identity.path.split('?').next().unwrap_or_default();
            let endpoint = Endpoint {
                provider: spec.clone(),
                writes: false,
                shape: Shape::of_identity(identity.body.as_ref()),
                answer: fx.and_then(|fx| fx.identity.clone()),
                missing: format!("add [identity] to {file}"),
                name: format!("{id}.identity"),
                identity: Some(IdentityPointers {
                    provider: id.clone(),
                    id: identity.id.clone(),
                    label: identity.label.clone(),
                }),
            };
            routes
                .entry(route_pattern(path).context("identity")?)
                .or_default()
                .entry(identity.method.parse()?)
                .or_default()
                .push(endpoint);
        }

        let mut router = Router::new();
        for (pattern, methods) in routes {
            let mut method_router = MethodRouter::new();
            for (method, mut endpoints) in methods {
                // Stable: among equals, catalog order, and the identity last.
                endpoints.sort_by_key(|e| std::cmp::Reverse(e.shape.demands()));
                let endpoints: Arc<[Endpoint]> = endpoints.into();
                let filter = MethodFilter::try_from(method.clone())
                    .map_err(|_| anyhow::anyhow!("method {method} cannot be routed"))?;
                let state = state.clone();
                method_router =
                    method_router.on(filter, move |request: Request| serve(state.clone(), endpoints.clone(), request));
            }
            router = router.route(&pattern, method_router);
        }
        let gate = Arc::new(gate_for(provider, fx, errors.0)?.for_provider(id));
        Ok(router.route_layer(from_fn_with_state((state.clone(), gate), gate::check)))
    }
}

/// This crate's `fixtures/` folder.
pub(crate) fn default_fixtures_dir() -> PathBuf {
    fixtures::default_dir()
}

/// What every endpoint of one provider shares.
#[derive(Debug)]
struct ProviderSpec {
    encoding: BodyEncoding,
    fixed_headers: Vec<HeaderName>,
    idempotency_header: Option<HeaderName>,
    request_id_header: Option<HeaderName>,
    bad_request: Canned,
}

impl ProviderSpec {
    fn bad_request(&self, reason: &str) -> Response {
        self.bad_request.respond(Some(reason))
    }
}

/// One tool (or the identity) at one method and path.
#[derive(Debug)]
struct Endpoint {
    /// The tool's name (`github_create_issue`) or `<provider>.identity`.
    name: String,
    provider: Arc<ProviderSpec>,
    writes: bool,
    shape: Shape,
    answer: Option<Canned>,
    /// What to do about a missing answer, for the `501`.
    missing: String,
    /// For the identity endpoint: where the account's id and label go.
    identity: Option<IdentityPointers>,
}

/// The catalog's identity pointers of a provider.
#[derive(Debug)]
struct IdentityPointers {
    provider: String,
    id: String,
    label: String,
}

impl Endpoint {
    fn answer(&self, state: &AppState, headers: &HeaderMap, account: Option<&Account>) -> Response {
        let personal;
        let canned = match (&self.answer, &self.identity, account) {
            (Some(canned), Some(p), Some(Account(login))) => {
                let body = canned.body.clone().unwrap_or_else(|| serde_json::json!({}));
                personal = Canned {
                    body: Some(crate::oauth::personalize(&body, &p.provider, login, &p.id, &p.label)),
                    ..canned.clone()
                };
                Some(&personal)
            }
            (canned, _, _) => canned.as_ref(),
        };
        let Some(canned) = canned else {
            return error_body(
                StatusCode::NOT_IMPLEMENTED,
                &format!("the emulator has no canned answer for {}: {}", self.name, self.missing),
            );
        };
        let key = self
            .provider
            .idempotency_header
            .as_ref()
            .and_then(|h| headers.get(h))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if self.writes {
            state.world().perform(key.as_deref());
        }
        let mut response = canned.respond(None);
        if let Some(header) = &self.provider.request_id_header {
            static NEXT: AtomicU64 = AtomicU64::new(1);
            let id = format!("emu-{:08x}", NEXT.fetch_add(1, Ordering::Relaxed));
            if let Ok(value) = HeaderValue::from_str(&id) {
                response.headers_mut().insert(header.clone(), value);
            }
        }
        response.extensions_mut().insert(Served { tool: self.name.clone(), idempotency_key: key });
        response
    }
}

/// Answer a request with the first endpoint whose shape it fits.
async fn serve(state: AppState, endpoints: Arc<[Endpoint]>, request: Request) -> Response {
    let provider = &endpoints[0].provider;
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return provider.bad_request("the request body is too large or was cut off");
    };
    if let Some(missing) = provider.fixed_headers.iter().find(|h| !parts.headers.contains_key(*h)) {
        return provider.bad_request(&format!("missing required header: {missing}"));
    }
    let incoming = Incoming::parse(&parts, &bytes, provider.encoding);
    let mut reason = None;
    for endpoint in endpoints.iter() {
        match endpoint.shape.check(&incoming) {
            Ok(()) => return endpoint.answer(&state, &parts.headers, parts.extensions.get::<Account>()),
            // A GraphQL query that is another tool's says nothing about this request.
            Err(why) if reason.is_some() && why.starts_with(shape::OTHER_QUERY) => {}
            Err(why) => reason = Some(why),
        }
    }
    provider.bad_request(reason.as_deref().unwrap_or("the request does not fit"))
}

/// The gate of a provider, from its catalog auth and its fixtures' extras.
fn gate_for(provider: &Provider, fx: Option<&ProviderFixtures>, unauthorized: Canned) -> anyhow::Result<Gate> {
    let mut schemes = match &provider.auth {
        Auth::Oauth2 { .. } => vec![Scheme::Bearer],
        // As the worker applies it: the header wins when both are declared.
        Auth::ApiKey { header: Some(header), format, .. } => vec![Scheme::header(header.parse()?, format)],
        Auth::ApiKey { query: Some(query), format, .. } => vec![Scheme::query(query, format)],
        Auth::ApiKey { .. } => bail!("api_key auth without a header or query parameter"),
        Auth::Basic => vec![Scheme::Basic],
        Auth::KeyPair { key_query, token_query } => {
            vec![Scheme::query(key_query, "{key}"), Scheme::query(token_query, "{key}")]
        }
    };
    if let Some(fx) = fx {
        schemes.extend(fx.auth.token_query.iter().map(|q| Scheme::query(q, "{key}")));
    }
    Ok(Gate::new(schemes, move || unauthorized.respond(Some("invalid or missing credentials"))))
}

/// The shared error shape, for a provider without a fixture file.
fn default_errors() -> (Canned, Canned) {
    let canned = |status: u16, message: &str| Canned {
        status,
        body: Some(serde_json::json!({"error": {"message": message}})),
        headers: BTreeMap::new(),
    };
    (canned(401, "invalid token"), canned(400, "{message}"))
}

/// The axum route for a catalog path: each `{placeholder}` becomes `{p0}`, `{p1}`… so
/// tools naming the same position differently share one route (axum refuses two
/// names for one position).
fn route_pattern(path: &str) -> anyhow::Result<String> {
    if !path.starts_with('/') {
        bail!("path {path:?} must start with '/'");
    }
    let mut index = 0;
    let mut segments = Vec::new();
    for segment in path.split('/') {
        if segment.starts_with('{') && segment.ends_with('}') && segment.matches('{').count() == 1 {
            segments.push(format!("{{p{index}}}"));
            index += 1;
        } else if segment.contains(['{', '}', '*']) {
            bail!("path {path:?}: only whole segments can be placeholders");
        } else {
            segments.push(segment.to_owned());
        }
    }
    Ok(segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_named_by_position() {
        assert_eq!(
            route_pattern("/repos/{owner}/{repo}/issues/{issue_number}").unwrap_or_default(),
            "/repos/{p0}/{p1}/issues/{p2}"
        );
        assert_eq!(route_pattern("/chat.postMessage").unwrap_or_default(), "/chat.postMessage");
        assert!(route_pattern("/files/{id}:copy").is_err());
    }

    /// Every catalog tool has a canned answer, and every answer fits its tool: a new tool
    /// cannot go unserved (the end-to-end test executes each one).
    #[test]
    fn every_catalog_tool_has_a_fitting_answer() {
        let providers = Providers::load_default().unwrap_or_else(|e| panic!("{e:#}"));
        let problems = providers.problems();
        assert!(problems.is_empty(), "the emulator's fixtures do not cover the catalog:\n  {}", problems.join("\n  "));
        assert!(providers.ids().count() >= 13);
    }
}
