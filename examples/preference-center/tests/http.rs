//! The preference center over plain HTTP (no browser): the parts a browser test cannot see
//! well, or that need another configuration.

mod common;

use std::time::Duration;

use common::{send, sign_in, start};
use egard::{AccessDenied, Error};
use hyper::{Method, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_form_is_no_account_oracle() {
    let app = start(|c| c).await;
    let page = send(Method::GET, &format!("{}/signin", app.url), &[], None).await;
    let cookie = page.session_cookie().unwrap();
    let ask = |email: &'static str| {
        let (url, cookie, csrf) = (app.url.clone(), cookie.clone(), page.csrf());
        async move {
            send(
                Method::POST,
                &format!("{url}/signin"),
                &[("cookie", &cookie)],
                Some(&format!("csrf={csrf}&email={email}")),
            )
            .await
        }
    };
    let known = ask("alice%40example.com").await;
    let unknown = ask("nobody%40example.com").await;
    assert_eq!(known.status, StatusCode::OK);
    assert_eq!(unknown.status, StatusCode::OK);
    assert_eq!(
        known.body, unknown.body,
        "the same page whether the address is known or not"
    );
    assert_eq!(app.links().len(), 1, "a link only for the known address");

    let bad = ask("not-an-address").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text().contains("Enter your email address"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_cookies_under_tls() {
    let app = start(|c| c.secure_cookies(true)).await;
    let page = send(Method::GET, &format!("{}/signin", app.url), &[], None).await;
    let set_cookie = page.headers.get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(set_cookie.starts_with("__Host-egard_session="), "{set_cookie}");
    for flag in ["; Path=/", "; HttpOnly", "; SameSite=Lax", "; Secure"] {
        assert!(set_cookie.contains(flag), "{flag} in {set_cookie}");
    }
    assert!(!set_cookie.contains("Domain="));
    assert_eq!(page.headers["strict-transport-security"], "max-age=31536000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_on_every_response() {
    let app = start(|c| c).await;
    for path in ["/signin", "/style.css", "/no-such-page", "/consents"] {
        let reply = send(Method::GET, &format!("{}{path}", app.url), &[], None).await;
        let csp = reply.headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && !csp.contains("script-src"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(reply.headers["x-content-type-options"], "nosniff");
        assert_eq!(reply.headers["referrer-policy"], "no-referrer");
        assert_eq!(reply.headers["x-frame-options"], "DENY");
        assert_eq!(reply.headers["cache-control"], "no-store");
        assert!(!app.url.is_empty());
    }
    let missing = send(Method::GET, &format!("{}/no-such-page", app.url), &[], None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.text().contains("<html lang=\"en\">"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_link_signs_no_one_in() {
    let app = start(|c| c.link_lifetime(Duration::ZERO)).await;
    let page = send(Method::GET, &format!("{}/signin", app.url), &[], None).await;
    let cookie = page.session_cookie().unwrap();
    send(
        Method::POST,
        &format!("{}/signin", app.url),
        &[("cookie", &cookie)],
        Some(&format!("csrf={}&email=alice%40example.com", page.csrf())),
    )
    .await;
    let link = app.links().pop().unwrap();
    let opened = send(Method::GET, &link, &[], None).await;
    assert_eq!(opened.status, StatusCode::BAD_REQUEST);
    assert!(opened.session_cookie().is_none());
    assert!(opened.text().contains("cannot be used"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_posts_change_nothing() {
    let app = start(|c| c).await;
    let alice = app.customer("alice@example.com").await.unwrap();
    let cookie = sign_in(&app, "alice@example.com").await;
    let before = app.with_vault(move |v| v.consents(alice).unwrap()).await;
    let withdraw = format!("{}/consents/newsletter/withdraw", app.url);

    // No token, a wrong token, a token from another origin: 403, nothing changed.
    let none = send(Method::POST, &withdraw, &[("cookie", &cookie)], Some("")).await;
    assert_eq!(none.status, StatusCode::FORBIDDEN);
    let wrong = send(
        Method::POST,
        &withdraw,
        &[("cookie", &cookie)],
        Some(&format!("csrf={}", "0".repeat(64))),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let page = send(
        Method::GET,
        &format!("{}/consents", app.url),
        &[("cookie", &cookie)],
        None,
    )
    .await;
    let csrf = page.csrf();
    let cross = send(
        Method::POST,
        &withdraw,
        &[("cookie", &cookie), ("origin", "http://evil.example")],
        Some(&format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let cross_site = send(
        Method::POST,
        &withdraw,
        &[("cookie", &cookie), ("sec-fetch-site", "cross-site")],
        Some(&format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
    let erase = send(
        Method::POST,
        &format!("{}/delete", app.url),
        &[("cookie", &cookie)],
        Some("confirm=yes"),
    )
    .await;
    assert_eq!(erase.status, StatusCode::FORBIDDEN);
    let after = app.with_vault(move |v| v.consents(alice).unwrap()).await;
    assert_eq!(before, after);
    app.with_vault(move |v| v.authorize(alice, "newsletter").map(drop))
        .await
        .unwrap();

    // Deleting without ticking the box is refused too, and deletes nothing.
    let unconfirmed = send(
        Method::POST,
        &format!("{}/delete", app.url),
        &[("cookie", &cookie)],
        Some(&format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(unconfirmed.status, StatusCode::BAD_REQUEST);
    assert!(unconfirmed.text().contains("Nothing was deleted"));
    app.with_vault(move |v| v.authorize(alice, "order_history").map(drop))
        .await
        .unwrap();

    // An unknown purpose or action: a clear error, nothing changed.
    let unknown = send(
        Method::POST,
        &format!("{}/consents/no_such_purpose/give", app.url),
        &[("cookie", &cookie)],
        Some(&format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let contract = send(
        Method::POST,
        &format!("{}/consents/order_history/withdraw", app.url),
        &[("cookie", &cookie)],
        Some(&format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(contract.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.with_vault(move |v| v.consents(alice).unwrap()).await, before);

    // The genuine form works.
    let ok = send(
        Method::POST,
        &withdraw,
        &[("cookie", &cookie), ("origin", &app.url)],
        Some(&format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let denied = app
        .with_vault(move |v| v.authorize(alice, "newsletter").map(drop))
        .await;
    assert!(matches!(denied, Err(Error::Denied(AccessDenied::Withdrawn))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_out_visitors_are_sent_to_sign_in() {
    let app = start(|c| c).await;
    for path in ["/", "/consents", "/data", "/activity", "/delete"] {
        let reply = send(Method::GET, &format!("{}{path}", app.url), &[], None).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(reply.headers["location"], "/signin");
    }
    let cookie = sign_in(&app, "bob@example.com").await;
    let page = send(
        Method::GET,
        &format!("{}/consents", app.url),
        &[("cookie", &cookie)],
        None,
    )
    .await;
    let signout = send(
        Method::POST,
        &format!("{}/signout", app.url),
        &[("cookie", &cookie)],
        Some(&format!("csrf={}", page.csrf())),
    )
    .await;
    assert_eq!(signout.status, StatusCode::SEE_OTHER);
    let after = send(
        Method::GET,
        &format!("{}/consents", app.url),
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(after.status, StatusCode::SEE_OTHER, "the old cookie signs no one in");
}
