//! A minimal browser for tests of the web front: keeps cookies, does not follow
//! redirects (tests look at them), and reads the CSRF token out of a form.

use std::collections::BTreeMap;

pub struct Browser {
    pub base: String,
    http: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
    /// Sent as `X-Forwarded-For` on every request: a client behind a proxy (counted as
    /// this address only where the web front trusts the proxy).
    pub forwarded_for: Option<String>,
}

pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The value of the first hidden `csrf` field.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("the page has a form with a csrf field") + marker.len();
        let end = self.body[start..].find('"').unwrap();
        self.body[start..start + end].to_string()
    }
}

impl Browser {
    pub fn new(base: &str) -> Self {
        crate::install_crypto();
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { base: base.to_string(), http, cookies: BTreeMap::new(), forwarded_for: None }
    }

    /// A request with this browser's cookies and forwarding header.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).header("cookie", self.cookie_header());
        if let Some(ip) = &self.forwarded_for {
            req = req.header("x-forwarded-for", ip);
        }
        req
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn finish(&mut self, resp: reqwest::Response) -> Page {
        for value in resp.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() || text.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        let status = resp.status().as_u16();
        let location = resp.headers().get("location").map(|l| l.to_str().unwrap().to_string());
        let headers = resp.headers().clone();
        Page { status, location, headers, body: resp.text().await.unwrap_or_default() }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let resp = self.request(reqwest::Method::GET, path).send().await.unwrap();
        self.finish(resp).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let origin = self.base.clone();
        self.post_from(&origin, path, form).await
    }

    /// Posts a form as a page of `origin` would (browsers send its `Origin` header).
    pub async fn post_from(&mut self, origin: &str, path: &str, form: &[(&str, &str)]) -> Page {
        let resp = self.request(reqwest::Method::POST, path).header("origin", origin).form(form).send().await.unwrap();
        self.finish(resp).await
    }

    /// Posts `body` as a form, bytes as they are (to send what `form` would encode away).
    pub async fn post_raw(&mut self, path: &str, body: Vec<u8>) -> Page {
        let resp = self
            .request(reqwest::Method::POST, path)
            .header("origin", self.base.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.finish(resp).await
    }

    /// Signs in through the real form.
    pub async fn sign_in(&mut self, email: &str, password: &str) -> Page {
        let form = self.get("/signin").await;
        let csrf = form.csrf();
        self.post("/signin", &[("csrf", &csrf), ("email", email), ("password", password), ("next", "/")]).await
    }

    /// Signs up (which signs in) through the real forms.
    pub async fn sign_up(&mut self, email: &str, password: &str) -> Page {
        let form = self.get("/signup").await;
        let csrf = form.csrf();
        self.post(
            "/signup",
            &[("csrf", &csrf), ("email", email), ("password", password), ("display_name", "Tester"), ("next", "/")],
        )
        .await
    }
}
