//! The preference center in a real browser: headless Chromium driven over WebDriver
//! (chromedriver), against the app running in-process on 127.0.0.1 with a temporary SQLite
//! file. What the browser does is checked through the vault.
//!
//! Needs `/usr/bin/chromedriver` and `/usr/bin/chromium` (Debian: `chromium chromium-driver`;
//! other paths with `EGARD_CHROMEDRIVER` and `EGARD_CHROMIUM`). Without them the test says so
//! and passes, unless `EGARD_REQUIRE_BROWSER=1` (as in CI), when it fails.
//!
//! With `EGARD_SCREENSHOTS=1` the screenshots it takes of each page are written to
//! `docs/screenshots/` (they are taken, and checked to be PNG images, on every run).
//!
//! The `Sec-GPC: 1` header cannot be added to the browser's requests through WebDriver, so
//! the GPC request is sent with a plain HTTP client carrying the session cookie read from the
//! browser; the browser then shows the outcome.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestApp, send, start};
use egard::{AccessDenied, Error};
use egard_preference_center::DEMO_CUSTOMERS;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper::{Method, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;

/// chromedriver, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tool(var: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    path.exists().then_some(path)
}

/// Starts chromedriver on a free port of 127.0.0.1 and waits until it answers.
async fn start_driver(chromedriver: &Path) -> Driver {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let started = Instant::now();
    loop {
        let status = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
        )
        .await;
        if matches!(status, Ok(Ok(_))) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    driver
}

async fn browser(driver: &Driver, chromium: &Path, downloads: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1000,1300", "--hide-scrollbars", "--force-device-scale-factor=1",
                "--lang=en-GB", "--no-first-run", "--disable-extensions",
            ],
            "prefs": {
                "download.default_directory": downloads,
                "download.prompt_for_download": false,
            },
        }),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session")
}

/// Takes a screenshot of the page (checked to be a PNG image); with `EGARD_SCREENSHOTS=1`,
/// writes it to `docs/screenshots/NAME.png` at the workspace root.
async fn screenshot(client: &Client, name: &str) {
    // The whole page, not only the window: size the window to the document first.
    let height = client
        .execute("return document.documentElement.scrollHeight", vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap_or(1300)
        .clamp(600, 4000);
    client
        .set_window_size(1000, u32::try_from(height).unwrap() + 140)
        .await
        .unwrap();
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is a PNG image");
    if std::env::var_os("EGARD_SCREENSHOTS").is_some_and(|v| v == "1") {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
    client.set_window_size(1000, 1300).await.unwrap();
}

/// Waits for the element at `xpath`; on timeout, says where the browser is.
async fn wait_for(client: &Client, app: &TestApp, xpath: &str) -> Result<(), String> {
    match client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath(xpath))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "waiting for {xpath}: {e}; the browser is at {:?} with the heading {:?}; the server log ends {:?}",
            client.current_url().await.map(|u| u.path().to_owned()),
            client.find(Locator::Css("h1")).await.ok().map(|_| "found"),
            app.log.lines().iter().rev().take(5).collect::<Vec<_>>()
        )),
    }
}

async fn h1(client: &Client) -> String {
    client.find(Locator::Css("h1")).await.unwrap().text().await.unwrap()
}

async fn main_text(client: &Client) -> String {
    client.find(Locator::Css("main")).await.unwrap().text().await.unwrap()
}

/// Clicks the button of the form posting to `action`.
async fn submit(client: &Client, action: &str) {
    client
        .find(Locator::Css(&format!(
            "form[action=\"{action}\"] button[type=\"submit\"]"
        )))
        .await
        .unwrap_or_else(|_| panic!("a form posting to {action}"))
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preference_center_in_a_real_browser() {
    let required = std::env::var_os("EGARD_REQUIRE_BROWSER").is_some_and(|v| v == "1");
    let (Some(chromedriver), Some(chromium)) = (
        tool("EGARD_CHROMEDRIVER", "/usr/bin/chromedriver"),
        tool("EGARD_CHROMIUM", "/usr/bin/chromium"),
    ) else {
        assert!(
            !required,
            "EGARD_REQUIRE_BROWSER=1 but chromedriver or chromium is missing (apt-get install chromium chromium-driver)"
        );
        eprintln!(
            "SKIPPED the browser test: /usr/bin/chromedriver or /usr/bin/chromium is missing \
             (apt-get install chromium chromium-driver; EGARD_REQUIRE_BROWSER=1 makes this a failure)"
        );
        return;
    };
    let app = start(|c| c).await;
    let driver = start_driver(&chromedriver).await;
    let downloads = tempfile::tempdir().unwrap();
    let client = browser(&driver, &chromium, downloads.path()).await;
    let outcome = run(&app, &client, downloads.path()).await;
    let _ = client.close().await;
    drop(driver);
    outcome.unwrap_or_else(|e| panic!("{e}"));
}

async fn run(app: &TestApp, client: &Client, downloads: &Path) -> Result<(), String> {
    let (email, first_name) = DEMO_CUSTOMERS[0];
    let alice = app.customer(email).await.expect("the demo customer");

    // ----- Sign in, by keyboard: type the address, press Enter. -----
    client.goto(&format!("{}/signin", app.url)).await.unwrap();
    assert_eq!(h1(client).await, "Sign in");
    let lang = client
        .find(Locator::Css("html"))
        .await
        .unwrap()
        .attr("lang")
        .await
        .unwrap();
    assert_eq!(lang.as_deref(), Some("en"));
    let label = client.find(Locator::Css("label[for=\"email\"]")).await.unwrap();
    assert_eq!(label.text().await.unwrap(), "Your email address");
    screenshot(client, "01-sign-in").await;
    // Keyboard only: Tab reaches the skip link first, with a visible focus ring, then the
    // email field; Enter sends the form.
    let tab = "\u{e004}";
    client
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys(tab)
        .await
        .unwrap();
    let focused = client.active_element().await.unwrap();
    assert_eq!(focused.attr("class").await.unwrap().as_deref(), Some("skip"));
    assert_eq!(
        focused.css_value("outline-style").await.unwrap(),
        "solid",
        "a visible focus"
    );
    focused.send_keys(tab).await.unwrap();
    let field = client.active_element().await.unwrap();
    assert_eq!(field.attr("id").await.unwrap().as_deref(), Some("email"));
    assert_eq!(
        field.css_value("outline-style").await.unwrap(),
        "solid",
        "a visible focus"
    );
    field.send_keys("  Alice@Example.COM").await.unwrap();
    field.send_keys("\u{e007}").await.unwrap(); // Enter
    wait_for(client, app, "//h1[text()='Check your email']").await?;
    let known = main_text(client).await;

    // An unknown address gets the very same page, and no link.
    client.goto(&format!("{}/signin", app.url)).await.unwrap();
    let field = client.find(Locator::Id("email")).await.unwrap();
    field.send_keys("nobody@example.com\u{e007}").await.unwrap();
    wait_for(client, app, "//h1[text()='Check your email']").await?;
    assert_eq!(main_text(client).await, known, "no account oracle");
    let links = app.links();
    assert_eq!(links.len(), 1, "one link, for the known address only");
    let link = links[0].clone();
    let token = link.rsplit("token=").next().unwrap().to_owned();
    assert_eq!(token.len(), 64, "256 bits, in hexadecimal");

    // The link signs in and sets the session cookie.
    client.goto(&link).await.unwrap();
    assert_eq!(client.current_url().await.unwrap().path(), "/consents");
    assert_eq!(h1(client).await, "Your consents");
    assert!(main_text(client).await.contains("You are signed in."));
    let cookie = client.get_named_cookie("egard_session").await.unwrap();
    assert_eq!(cookie.http_only(), Some(true), "HttpOnly");
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Lax)");
    assert_eq!(
        cookie.secure(),
        Some(false),
        "served over plain HTTP in the test; Secure under TLS"
    );
    assert_eq!(cookie.path(), Some("/"));
    let session = format!("egard_session={}", cookie.value());
    let cookie_value = cookie.value().to_owned();

    // The link works once.
    client.goto(&link).await.unwrap();
    assert_eq!(h1(client).await, "Link expired");
    client.goto(&format!("{}/consents", app.url)).await.unwrap();
    assert_eq!(h1(client).await, "Your consents", "still signed in by the first use");

    // ----- Your consents: each purpose with its notice, version and state. -----
    let text = main_text(client).await;
    for expected in [
        "Newsletter",
        "Privacy notice version 2",
        "Once a week or once a month",
        "Partner offers",
        "Shares your data with other companies",
        "Order history",
        "Analytics",
        "Our legitimate interests (you may object)",
    ] {
        assert!(text.contains(expected), "the consents page shows {expected:?}");
    }
    // Alice's choices, as she gave them at sign-up, are ticked.
    let ticked =
        |id: &'static str| async move { client.find(Locator::Id(id)).await.unwrap().is_selected().await.unwrap() };
    assert!(ticked("c-newsletter-topics-rides").await);
    assert!(ticked("c-newsletter-topics-food").await);
    assert!(!ticked("c-newsletter-topics-offers").await);
    assert!(ticked("c-newsletter-frequency-monthly").await);
    assert_eq!(
        client
            .find(Locator::Id("c-newsletter-frequency-weekly"))
            .await
            .unwrap()
            .attr("type")
            .await
            .unwrap()
            .as_deref(),
        Some("radio")
    );
    screenshot(client, "02-consents").await;

    // ----- Change a choice: offers on, food off, weekly; by clicking the labels. -----
    client
        .find(Locator::Css("label[for=\"c-newsletter-topics-offers\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .find(Locator::Css("label[for=\"c-newsletter-topics-food\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .find(Locator::Css("label[for=\"c-newsletter-frequency-weekly\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    submit(client, "/consents/newsletter/choices").await;
    wait_for(
        client,
        app,
        "//p[contains(., 'Your choices for Newsletter are saved.')]",
    )
    .await?;
    let choices = app
        .with_vault(move |v| {
            let mailer = v.acting_as("service:mailer").unwrap();
            let pass = mailer.authorize(alice, "newsletter").unwrap();
            let choices = mailer.choices(&pass).unwrap();
            let c = choices.expose();
            (
                c.get("topics").map(<[String]>::to_vec),
                c.get("frequency").map(<[String]>::to_vec),
            )
        })
        .await;
    assert_eq!(choices.0, Some(vec!["offers".to_owned(), "rides".to_owned()]));
    assert_eq!(choices.1, Some(vec!["weekly".to_owned()]));
    assert!(ticked("c-newsletter-topics-offers").await && !ticked("c-newsletter-topics-food").await);

    // Your data shows them too, while the newsletter is on.
    client.goto(&format!("{}/data", app.url)).await.unwrap();
    let text = main_text(client).await;
    assert!(
        text.contains("Newsletter: topics") && text.contains("Offers and Rides"),
        "{text}"
    );
    assert!(
        text.contains("Newsletter: frequency") && text.contains("Weekly"),
        "{text}"
    );
    screenshot(client, "03-your-data").await;

    // An option the purpose does not offer: refused, nothing changed.
    let page = send(
        Method::GET,
        &format!("{}/consents", app.url),
        &[("cookie", &session)],
        None,
    )
    .await;
    let csrf = page.csrf();
    let bad = send(
        Method::POST,
        &format!("{}/consents/newsletter/choices", app.url),
        &[("cookie", &session)],
        Some(&format!("csrf={csrf}&choice.topics=gossip&choice.frequency=weekly")),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let consents_before = app.with_vault(move |v| v.consents(alice).unwrap()).await;

    // ----- Withdraw the newsletter in one click; the vault now denies it. -----
    client.goto(&format!("{}/consents", app.url)).await.unwrap();
    submit(client, "/consents/newsletter/withdraw").await;
    wait_for(client, app, "//p[contains(., 'Newsletter is off')]").await?;
    let newsletter = client
        .find(Locator::Id("purpose-newsletter"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(newsletter.contains("Off — you withdrew on"), "{newsletter}");
    let denied = app
        .with_vault(move |v| v.authorize(alice, "newsletter").map(drop))
        .await;
    assert!(
        matches!(denied, Err(Error::Denied(AccessDenied::Withdrawn))),
        "{denied:?}"
    );

    // ----- A POST without the CSRF token: 403, nothing changed. -----
    let consents_mid = app.with_vault(move |v| v.consents(alice).unwrap()).await;
    assert_eq!(
        consents_mid.len(),
        consents_before.len(),
        "withdrawing stamps the record"
    );
    for form in ["", "choice.topics=rides", &format!("csrf={}", "f".repeat(64))] {
        let forged = send(
            Method::POST,
            &format!("{}/consents/newsletter/give", app.url),
            &[("cookie", &session)],
            Some(form),
        )
        .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(app.with_vault(move |v| v.consents(alice).unwrap()).await, consents_mid);

    // ----- Your data: the values, shown through the audited export. -----
    client.goto(&format!("{}/data", app.url)).await.unwrap();
    assert_eq!(h1(client).await, "Your data");
    let text = main_text(client).await;
    for expected in [email, first_name, "12 Rue des Lilas, 75011 Paris", "42"] {
        assert!(text.contains(expected), "the data page shows {expected:?}");
    }
    let exports = app
        .with_vault(move |v| {
            v.audit_events(alice)
                .unwrap()
                .into_iter()
                .filter(|e| e.kind == egard::AuditKind::Exported && e.detail.contains("source=your-data-page"))
                .count()
        })
        .await;
    assert_eq!(exports, 2, "each showing of the data is a recorded subject access");

    // ----- Download: the export as a JSON attachment. -----
    let csrf = client
        .find(Locator::Css("form[action=\"/data/export\"] input[name=\"csrf\"]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    let download = send(
        Method::POST,
        &format!("{}/data/export", app.url),
        &[("cookie", &session), ("origin", &app.url)],
        Some(&format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(download.headers["content-type"], "application/json");
    assert_eq!(
        download.headers["content-disposition"],
        "attachment; filename=\"my-data.json\""
    );
    let json: serde_json::Value = serde_json::from_slice(&download.body).map_err(|e| e.to_string())?;
    assert_eq!(json["customer"], alice.to_string());
    assert_eq!(json["fields"]["email"], email);
    assert_eq!(json["fields"]["first_name"], first_name);
    assert_eq!(json["fields"]["pages_viewed"], 42);
    assert!(json["consents"].as_array().is_some_and(|c| c.len() >= 4));
    assert!(
        json["choices"].as_object().is_some_and(|c| !c.is_empty()),
        "the export holds the declared choices"
    );
    // The button downloads the file in the browser too (the page stays).
    submit(client, "/data/export").await;
    let file = downloads.join("my-data.json");
    let started = Instant::now();
    while !file.exists() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).map_err(|e| format!("the browser saved no download: {e}"))?)
            .map_err(|e| e.to_string())?;
    assert_eq!(saved["fields"]["email"], email);
    assert_eq!(h1(client).await, "Your data");

    // ----- Who used your data: the mailer's access (made at seeding), in plain words. -----
    client.goto(&format!("{}/activity", app.url)).await.unwrap();
    assert_eq!(h1(client).await, "Who used your data");
    let text = main_text(client).await;
    assert!(
        text.contains("service:mailer used your email and first name for Newsletter."),
        "the mailer's access is shown: {text}"
    );
    assert!(
        text.contains(
            "asked to use your email and first name for Newsletter and was refused: you had withdrawn your consent."
        ),
        "{text}"
    );
    assert!(text.contains("you looked at your data here"), "{text}");
    assert!(text.contains("service:shop recorded your postal address"), "{text}");
    assert!(text.contains("you asked for a sign-in link"), "{text}");
    let log_reads = app
        .with_vault(move |v| {
            v.access_log(alice)
                .unwrap()
                .into_iter()
                .filter(|r| {
                    r.kind == egard::AccessKind::LogRead
                        && r.actor
                            .as_ref()
                            .is_some_and(|a| a.as_str() == "service:preference-center")
                })
                .count()
        })
        .await;
    assert_eq!(
        log_reads, 1,
        "reading the page is recorded in the preference center's name"
    );
    screenshot(client, "04-who-used-your-data").await;

    // ----- GPC: a request with Sec-GPC: 1 (plain HTTP client, the browser's cookie) turns off
    // the purposes the signal covers, and the page says so. -----
    let gpc = send(
        Method::GET,
        &format!("{}/consents", app.url),
        &[("cookie", &session), ("sec-gpc", "1")],
        None,
    )
    .await;
    assert_eq!(gpc.status, StatusCode::OK);
    assert!(
        gpc.text()
            .contains("Global Privacy Control signal, so we turned off Partner offers"),
        "the page says what the signal changed"
    );
    let partner = app
        .with_vault(move |v| v.authorize(alice, "partner_offers").map(drop))
        .await;
    assert!(
        matches!(partner, Err(Error::Denied(AccessDenied::Withdrawn))),
        "{partner:?}"
    );
    let signals = app
        .with_vault(move |v| {
            v.audit_events(alice)
                .unwrap()
                .into_iter()
                .filter(|e| {
                    e.kind == egard::AuditKind::ConsentWithdrawn
                        && e.detail.contains("gpc,method=sec-gpc-header,source=preference-center")
                })
                .count()
        })
        .await;
    assert_eq!(signals, 1, "the withdrawal records the signal as its evidence");
    // Legitimate interests that are not marketing, and the contract, are left alone.
    app.with_vault(move |v| v.authorize(alice, "analytics").map(drop))
        .await
        .map_err(|e| e.to_string())?;
    app.with_vault(move |v| v.authorize(alice, "order_history").map(drop))
        .await
        .map_err(|e| e.to_string())?;
    // Sent again, the signal changes nothing and says nothing.
    let again = send(
        Method::GET,
        &format!("{}/consents", app.url),
        &[("cookie", &session), ("sec-gpc", "1")],
        None,
    )
    .await;
    assert!(!again.text().contains("Global Privacy Control signal, so we turned off"));
    // Opting in again under the signal asks for an explicit confirmation first.
    let give = send(
        Method::POST,
        &format!("{}/consents/partner_offers/give", app.url),
        &[("cookie", &session), ("sec-gpc", "1")],
        Some(&format!("csrf={}", again.csrf())),
    )
    .await;
    assert_eq!(give.status, StatusCode::OK);
    assert!(give.text().contains("Turn it on despite your privacy signal?"));
    let still_off = app
        .with_vault(move |v| v.authorize(alice, "partner_offers").map(drop))
        .await;
    assert!(still_off.is_err(), "nothing changed before the confirmation");
    client.goto(&format!("{}/consents", app.url)).await.unwrap();
    let partner = client
        .find(Locator::Id("purpose-partner_offers"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(partner.contains("Off — you withdrew on"), "{partner}");

    // ----- Delete my account: confirmation, receipt, the session ends. -----
    client.goto(&format!("{}/delete", app.url)).await.unwrap();
    assert_eq!(h1(client).await, "Delete my account");
    screenshot(client, "05-delete-confirmation").await;
    // By keyboard: focus the box, tick it with the space bar.
    let confirm = client.find(Locator::Id("confirm")).await.unwrap();
    confirm.send_keys("\u{e00d}").await.unwrap(); // Space
    assert!(confirm.is_selected().await.unwrap());
    submit(client, "/delete").await;
    wait_for(client, app, "//h1[text()='Your account is deleted']").await?;
    let receipt = main_text(client).await;
    assert!(receipt.contains("Erasure receipt") && receipt.contains("Encryption keys destroyed"));
    assert!(receipt.contains("email") && receipt.contains("postal address"));
    screenshot(client, "06-erasure-receipt").await;
    let erased = app
        .with_vault(move |v| v.authorize(alice, "order_history").map(drop))
        .await;
    assert!(matches!(erased, Err(Error::Erased(_))), "{erased:?}");
    assert_eq!(app.customer(email).await, None, "the lookup no longer finds her");
    client.goto(&format!("{}/consents", app.url)).await.unwrap();
    assert_eq!(h1(client).await, "Sign in", "the session ended");
    let old = send(Method::GET, &format!("{}/data", app.url), &[("cookie", &session)], None).await;
    assert_eq!(old.status, StatusCode::SEE_OTHER, "the old cookie signs no one in");

    // ----- The log canary: the server's log holds no personal data and no secret. -----
    let log = app.log.lines();
    assert!(log.len() > 20, "every request is logged");
    let all = log.join("\n").to_lowercase();
    for secret in [
        email.to_owned(),
        first_name.to_lowercase(),
        "rue des lilas".to_owned(),
        "nobody@example.com".to_owned(),
        token.clone(),
        cookie_value.to_lowercase(),
        csrf.clone(),
        "offers".to_owned(),
        "weekly".to_owned(),
        alice.to_string(),
    ] {
        assert!(!all.contains(&secret), "the server log holds {secret:?}");
    }
    for line in &log {
        let parts: Vec<&str> = line.split(' ').collect();
        assert!(
            matches!(parts.as_slice(), [m, path, status, ms, ..]
                if ["GET", "POST"].contains(m) && (path.starts_with('/') || *path == "(unmatched)") && status.len() == 3 && ms.ends_with("ms")),
            "a log line is method, route, status, duration: {line}"
        );
    }
    assert!(
        log.iter()
            .any(|l| l.starts_with("POST /consents/{purpose}/{action} 403"))
    );
    assert!(log.iter().any(|l| l.starts_with("GET /signin/link 400")));
    Ok(())
}
