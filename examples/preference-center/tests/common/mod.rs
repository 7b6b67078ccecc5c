//! What the preference center's tests share: the app started in-process on 127.0.0.1:0 with a
//! temporary SQLite file and captured consoles, and a plain HTTP client.

#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Bytes;
use egard::{CustomerId, MasterKey, SqliteStore, Vault};
use egard_preference_center::{Captured, Config, app, seed_demo};
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The app, running.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The vault the app serves (the test checks through it).
    pub vault: Arc<Vault>,
    /// The server's request log.
    pub log: Captured,
    /// The "emails" (sign-in links).
    pub mail: Captured,
    /// Holds the SQLite file.
    _dir: tempfile::TempDir,
}

/// Starts the seeded app; `configure` adjusts the configuration.
pub async fn start(configure: impl FnOnce(Config) -> Config) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("prefs.db");
    let vault = tokio::task::spawn_blocking(move || {
        let vault = Vault::builder()
            .master_key(MasterKey::from_bytes([7; 32]))
            .store(SqliteStore::open(&db).unwrap())
            .build()
            .unwrap();
        assert!(seed_demo(&vault).unwrap());
        Arc::new(vault)
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = Captured::new();
    let mail = Captured::new();
    let config = configure(Config::new(&url).log(log.clone()).mail(mail.clone()));
    let router = app(vault.clone(), config);
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    TestApp {
        url,
        vault,
        log,
        mail,
        _dir: dir,
    }
}

impl TestApp {
    /// The demo customer with this email, through the vault's lookup.
    pub async fn customer(&self, email: &str) -> Option<CustomerId> {
        let vault = self.vault.clone();
        let email = email.to_owned();
        tokio::task::spawn_blocking(move || vault.find_customer("email", &email).unwrap())
            .await
            .unwrap()
    }

    /// Runs `f` on the vault on a blocking thread.
    pub async fn with_vault<T: Send + 'static>(&self, f: impl FnOnce(&Vault) -> T + Send + 'static) -> T {
        let vault = self.vault.clone();
        tokio::task::spawn_blocking(move || f(&vault)).await.unwrap()
    }

    /// The sign-in links "emailed" so far.
    pub fn links(&self) -> Vec<String> {
        self.mail
            .lines()
            .iter()
            .filter_map(|line| {
                line.split_whitespace()
                    .find(|w| w.starts_with("http"))
                    .map(str::to_owned)
            })
            .collect()
    }
}

/// A response, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The value of the hidden `csrf` field of the first form.
    pub fn csrf(&self) -> String {
        let text = self.text();
        let start = text.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
        text[start..start + 64].to_owned()
    }

    /// The `name=value` of the session cookie this response sets.
    pub fn session_cookie(&self) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.contains("egard_session="))
            .and_then(|v| v.split(';').next())
            .map(str::to_owned)
    }
}

/// Sends one request with a plain HTTP client (no browser): `headers` as given, a form body
/// for a POST.
pub async fn send(method: Method, url: &str, headers: &[(&str, &str)], form: Option<&str>) -> Reply {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let body = match form {
        Some(form) => {
            request = request.header("content-type", "application/x-www-form-urlencoded");
            Full::new(Bytes::from(form.to_owned()))
        }
        None => Full::new(Bytes::new()),
    };
    let response = client.request(request.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
    Reply { status, headers, body }
}

/// Signs `email` in with plain HTTP: returns the session cookie (`name=value`).
pub async fn sign_in(app: &TestApp, email: &str) -> String {
    let page = send(Method::GET, &format!("{}/signin", app.url), &[], None).await;
    let cookie = page.session_cookie().unwrap();
    let form = format!("csrf={}&email={}", page.csrf(), email.replace('@', "%40"));
    let sent = send(
        Method::POST,
        &format!("{}/signin", app.url),
        &[("cookie", &cookie)],
        Some(&form),
    )
    .await;
    assert_eq!(sent.status, StatusCode::OK);
    let link = app.links().pop().expect("a sign-in link");
    let opened = send(Method::GET, &link, &[], None).await;
    assert_eq!(opened.status, StatusCode::SEE_OTHER);
    opened.session_cookie().unwrap()
}
