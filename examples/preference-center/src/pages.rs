//! The routes, the request plumbing (sessions, CSRF, GPC, security headers, the request log)
//! and the pages.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use egard::{
    AccessKind, Actor, Choices, ConsentState, CustomerId, DEFAULT_ACTOR, Error, Evidence, LawfulBasis, Purpose,
    SubjectExport, Vault,
};

use crate::Config;

/// Who the preference center acts as in the audit log: every call it makes on a customer's
/// behalf is recorded in this name.
pub const ACTOR: &str = "service:preference-center";
use crate::html::{Html, Nav, STYLE, and_list, basis_words, field_words, page, title_of, when};
use crate::session::{Session, Sessions, csrf_matches};

/// Everything a handler needs.
struct AppState {
    vault: Arc<Vault>,
    sessions: Sessions,
    config: Config,
}

type Shared = Arc<AppState>;

/// Builds the router.
pub(crate) fn router(vault: Arc<Vault>, config: Config) -> Router {
    let state = Arc::new(AppState {
        vault,
        sessions: Sessions::new(config.session_lifetime, config.link_lifetime),
        config,
    });
    Router::new()
        .route("/", get(home))
        .route("/style.css", get(style))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/signin", get(signin_page).post(signin_submit))
        .route("/signin/link", get(signin_link))
        .route("/signout", post(signout))
        .route("/consents", get(consents_page))
        .route("/consents/{purpose}/{action}", post(consent_action))
        .route("/data", get(data_page))
        .route("/data/export", post(data_export))
        .route("/activity", get(activity_page))
        .route("/delete", get(delete_page).post(delete_submit))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

// ----- plumbing -----

/// The error kind a response carries for the request log (a fixed word, never a message).
#[derive(Clone, Copy)]
struct LoggedError(&'static str);

/// Around every request: refuses a cross-origin POST, adds the security headers, and logs the
/// method, route template, status and duration (nothing of the request's content).
async fn guard(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "(unmatched)".to_owned(), |p| p.as_str().to_owned());
    let mut response = if method == Method::POST && !same_origin(request.headers()) {
        AppError::Forbidden.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if state.config.secure_cookies {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    let error = response
        .extensions()
        .get::<LoggedError>()
        .map_or(String::new(), |e| format!(" error={}", e.0));
    state.config.log.line(&format!(
        "{method} {route} {} {:.1}ms{error}",
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0
    ));
    response
}

/// Whether a POST comes from a page of this server, as far as the browser says: by
/// `Sec-Fetch-Site` when it sends one (`same-origin`, or `none` for a request the user made
/// directly), else by `Origin` when it names one. Under `Referrer-Policy: no-referrer`,
/// browsers send `Origin: null` for a form of the same origin, so `null` proves nothing either
/// way; the CSRF token is checked all the same.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.to_str(), Ok("same-origin" | "none"));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if origin == "null" {
        return true;
    }
    let Some(Ok(host)) = headers.get(header::HOST).map(|h| h.to_str()) else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|o| o.eq_ignore_ascii_case(host))
}

/// What went wrong, as the customer is told.
enum AppError {
    /// A vault call failed.
    Vault(Error),
    /// A POST without the session's CSRF token, or from another origin.
    Forbidden,
    /// Input the page cannot use; the message says what to do.
    BadRequest(&'static str),
    /// No such page or purpose.
    NotFound,
    /// The server failed (a task panicked, no randomness).
    Internal,
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        Self::Vault(e)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, kind, title, message) = match self {
            Self::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "This form could not be accepted",
                "The form was sent without its security token, or from another site. Nothing was changed. \
                 Go back, reload the page and try again.",
            ),
            Self::BadRequest(message) => (
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Please check your answer",
                message,
            ),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "Page not found",
                "There is no page at this address.",
            ),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Something went wrong",
                "The server could not finish. Nothing was changed; please try again.",
            ),
            Self::Vault(e) => vault_error(&e),
        };
        let mut body = Html::new();
        body.raw("<p class=\"error\">")
            .text(message)
            .raw("</p>\n<p><a href=\"/\">Back to the preference center</a></p>\n");
        let mut response = (status, html(page(title, Nav::None, None, &[], &body.into_string()))).into_response();
        response.extensions_mut().insert(LoggedError(kind));
        response
    }
}

/// How a vault error is shown: egard's errors never carry personal data, but the page says
/// it in plain words and the log keeps a fixed word.
fn vault_error(e: &Error) -> (StatusCode, &'static str, &'static str, &'static str) {
    match e {
        Error::UnknownPurpose(_) => (
            StatusCode::NOT_FOUND,
            "unknown_purpose",
            "Page not found",
            "We do not use your data for that purpose.",
        ),
        Error::Erased(_) | Error::UnknownCustomer(_) => (
            StatusCode::GONE,
            "erased",
            "This account no longer exists",
            "This account was deleted. Nothing is left to show.",
        ),
        Error::InvalidChoice { .. } => (
            StatusCode::BAD_REQUEST,
            "invalid_choice",
            "Please check your choices",
            "One of the options sent is not offered for this purpose. Nothing was changed.",
        ),
        Error::GpcConflict { .. } => (
            StatusCode::CONFLICT,
            "gpc_conflict",
            "Your privacy signal says no",
            "Your browser asks us not to sell or share your data. Confirm on the consents page to turn this on anyway. Nothing was changed.",
        ),
        Error::Invalid(_) => (
            StatusCode::BAD_REQUEST,
            "invalid",
            "Please check your answer",
            "That request could not be accepted. Nothing was changed.",
        ),
        Error::Denied(_) => (
            StatusCode::FORBIDDEN,
            "denied",
            "Not allowed",
            "That change is not possible for this purpose. Nothing was changed.",
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "vault",
            "Something went wrong",
            "The server could not finish. Nothing was changed; please try again.",
        ),
    }
}

fn html(markup: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], markup).into_response()
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Runs `f` on the vault on a blocking thread.
async fn blocking<T, F>(state: &Shared, f: F) -> Result<T, AppError>
where
    T: Send + 'static,
    F: FnOnce(&Vault) -> Result<T, Error> + Send + 'static,
{
    let vault = state.vault.clone();
    tokio::task::spawn_blocking(move || f(&vault))
        .await
        .map_err(|_| AppError::Internal)?
        .map_err(AppError::Vault)
}

/// The value of the cookie `name`, if the request has it.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl AppState {
    fn set_cookie(&self, id: &str) -> String {
        format!(
            "{}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
            self.config.cookie_name(),
            self.config.session_lifetime.as_secs(),
            if self.config.secure_cookies { "; Secure" } else { "" }
        )
    }

    fn clear_cookie(&self) -> String {
        format!(
            "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
            self.config.cookie_name(),
            if self.config.secure_cookies { "; Secure" } else { "" }
        )
    }

    /// The request's live session, with its id.
    fn session(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = cookie(headers, self.config.cookie_name())?;
        let session = self.sessions.get(id)?;
        Some((id.to_owned(), session))
    }
}

/// A signed-in customer's request, once its session (and, for a POST, its CSRF token) passed.
struct Customer {
    sid: String,
    id: CustomerId,
    csrf: String,
    /// The last form's result, and what the GPC signal changed.
    notices: Vec<String>,
}

/// The signed-in customer of a GET request, or a redirect to the sign-in page.
async fn signed_in(state: &Shared, headers: &HeaderMap) -> Result<Customer, Response> {
    let Some((sid, session)) = state.session(headers) else {
        return Err(see_other("/signin"));
    };
    let Some(id) = session.customer else {
        return Err(see_other("/signin"));
    };
    let mut customer = Customer {
        csrf: session.csrf.as_str().to_owned(),
        notices: state.sessions.take_flash(&sid).into_iter().collect(),
        sid,
        id,
    };
    honor_gpc(state, headers, &mut customer).await.map_err(|e| {
        if matches!(e, AppError::Vault(Error::Erased(_) | Error::UnknownCustomer(_))) {
            state.sessions.end_all(id);
        }
        e.into_response()
    })?;
    Ok(customer)
}

/// The signed-in customer of a POST whose CSRF token matches; anything else changes nothing.
async fn signed_in_post(state: &Shared, headers: &HeaderMap, form: &Form) -> Result<Customer, Response> {
    let Some((_, session)) = state.session(headers) else {
        return Err(AppError::Forbidden.into_response());
    };
    if !csrf_matches(&session, form.get("csrf").unwrap_or("")) {
        return Err(AppError::Forbidden.into_response());
    }
    signed_in(state, headers).await
}

/// Applies the browser's Global Privacy Control signal (`Sec-GPC: 1`), if it sent one.
async fn honor_gpc(state: &Shared, headers: &HeaderMap, customer: &mut Customer) -> Result<(), AppError> {
    if !has_gpc(headers) {
        return Ok(());
    }
    if let Some(notice) = gpc_notice(state, customer.id).await? {
        customer.notices.push(notice);
    }
    Ok(())
}

/// Whether the request carries `Sec-GPC: 1`.
fn has_gpc(headers: &HeaderMap) -> bool {
    headers
        .get("sec-gpc")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "1")
}

/// What honouring the GPC signal changed, in words, if anything.
async fn gpc_notice(state: &Shared, customer: CustomerId) -> Result<Option<String>, AppError> {
    let outcome = blocking(state, move |vault| {
        vault.acting_as(ACTOR)?.honor_gpc(
            customer,
            Evidence::new("sec-gpc-header").source("preference-center").gpc(),
        )
    })
    .await?;
    if !outcome.changed() {
        return Ok(None);
    }
    let titles: Vec<String> = outcome
        .withdrawn
        .iter()
        .chain(&outcome.objected)
        .map(|p| title_of(p.as_str()))
        .collect();
    Ok(Some(format!(
        "Your browser sent the Global Privacy Control signal, so we turned off {}: we do not sell or share \
         your data or use it for direct marketing unless you turn it on yourself.",
        and_list(&titles)
    )))
}

/// A submitted form's fields, in order (a multi-choice repeats its name).
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Self {
        Self(form_urlencoded::parse(body).into_owned().collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

// ----- pages -----

async fn home(State(state): State<Shared>, headers: HeaderMap) -> Response {
    match state.session(&headers) {
        Some((_, session)) if session.customer.is_some() => see_other("/consents"),
        _ => see_other("/signin"),
    }
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

async fn not_found() -> Response {
    AppError::NotFound.into_response()
}

/// The sign-in form, in an anonymous session (created here if needed, for its CSRF token).
fn signin_form(state: &Shared, headers: &HeaderMap, status: StatusCode, error: Option<&str>) -> Response {
    let (cookie, session) = match state.session(headers) {
        Some((_, session)) => (None, session),
        None => match state.sessions.create(None) {
            Some((id, session)) => (Some(state.set_cookie(id.as_str())), session),
            None => return AppError::Internal.into_response(),
        },
    };
    let mut body = Html::new();
    body.raw("<p>Sign in to see and change what you agreed to, see the data we hold about you and who used it, ")
        .raw("download it, or delete your account.</p>\n");
    if let Some(error) = error {
        body.raw("<p class=\"error\" id=\"email-error\">")
            .text(error)
            .raw("</p>\n");
    }
    body.raw("<form method=\"post\" action=\"/signin\" class=\"card\">\n")
        .csrf(session.csrf.as_str())
        .raw("<div class=\"field\"><label for=\"email\">Your email address</label>\n")
        .raw("<input type=\"email\" id=\"email\" name=\"email\" autocomplete=\"email\" required");
    if error.is_some() {
        body.raw(" aria-invalid=\"true\" aria-describedby=\"email-error\"");
    }
    body.raw("></div>\n<button type=\"submit\">Send me a sign-in link</button>\n</form>\n")
        .raw("<p class=\"meta\">We send a link that signs you in once, within 10 minutes. No password. ")
        .raw("(In this demo the link is printed on the server's console instead of being emailed.)</p>\n");
    let mut response = (status, html(page("Sign in", Nav::None, None, &[], &body.into_string()))).into_response();
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

async fn signin_page(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if state.session(&headers).is_some_and(|(_, s)| s.customer.is_some()) {
        return see_other("/consents");
    }
    signin_form(&state, &headers, StatusCode::OK, None)
}

async fn signin_submit(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let Some((_, session)) = state.session(&headers) else {
        return AppError::Forbidden.into_response();
    };
    if !csrf_matches(&session, form.get("csrf").unwrap_or("")) {
        return AppError::Forbidden.into_response();
    }
    let email = form.get("email").unwrap_or("").trim().to_owned();
    if email.is_empty() || !email.contains('@') || email.len() > 254 {
        return signin_form(
            &state,
            &headers,
            StatusCode::BAD_REQUEST,
            Some("Enter your email address, like name@example.com."),
        );
    }
    let found = match blocking(&state, move |vault| {
        vault.acting_as(ACTOR)?.find_customer("email", &email)
    })
    .await
    {
        Ok(found) => found,
        Err(AppError::Vault(Error::Invalid(_))) => {
            return signin_form(
                &state,
                &headers,
                StatusCode::BAD_REQUEST,
                Some("Enter your email address, like name@example.com."),
            );
        }
        Err(e) => return e.into_response(),
    };
    if let Some(customer) = found {
        let Some(token) = state.sessions.issue_link(customer) else {
            return AppError::Internal.into_response();
        };
        state.config.mail.line(&format!(
            "[demo mail] A sign-in link for the address just entered (works once, for {} minutes): {}/signin/link?token={}",
            state.config.link_lifetime.as_secs() / 60,
            state.config.public_url,
            token.as_str()
        ));
    }
    // The same page whether or not the address is known: the form is no account oracle.
    let mut body = Html::new();
    body.raw("<p class=\"card\">If this address belongs to an account, we have just sent it a sign-in link. ")
        .raw("It works once, within 10 minutes.</p>\n")
        .raw("<p>No email? Check the address and <a href=\"/signin\">ask for a new link</a>.</p>\n");
    html(page("Check your email", Nav::None, None, &[], &body.into_string()))
}

async fn signin_link(State(state): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    let token = uri
        .query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "token"))
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let customer = match state.sessions.redeem_link(&token) {
        Ok(customer) => customer,
        Err(_) => {
            let mut body = Html::new();
            body.raw("<p class=\"error\">This sign-in link cannot be used: it was already used, or it is more than ")
                .raw("10 minutes old.</p>\n<p><a href=\"/signin\">Ask for a new link</a></p>\n");
            let mut response = (
                StatusCode::BAD_REQUEST,
                html(page("Link expired", Nav::None, None, &[], &body.into_string())),
            )
                .into_response();
            response.extensions_mut().insert(LoggedError("link_refused"));
            return response;
        }
    };
    // A new session id at sign-in: an id set before it (by anyone) signs no one in.
    if let Some((old, _)) = state.session(&headers) {
        state.sessions.end(&old);
    }
    let Some((id, _)) = state.sessions.create(Some(customer)) else {
        return AppError::Internal.into_response();
    };
    state.sessions.set_flash(id.as_str(), "You are signed in.".to_owned());
    let mut response = see_other("/consents");
    if let Ok(cookie) = HeaderValue::from_str(&state.set_cookie(id.as_str())) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

async fn signout(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let Some((sid, session)) = state.session(&headers) else {
        return see_other("/signin");
    };
    if !csrf_matches(&session, form.get("csrf").unwrap_or("")) {
        return AppError::Forbidden.into_response();
    }
    state.sessions.end(&sid);
    let mut response = see_other("/signin");
    if let Ok(cookie) = HeaderValue::from_str(&state.clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

// ----- your consents -----

/// Where a customer stands with one purpose.
#[derive(Clone, Copy)]
enum Standing {
    /// No record ever.
    None,
    /// A valid record, under the current notice, given at.
    On(DateTime<Utc>),
    /// A valid record under an older notice version: the customer must agree again.
    Outdated(u32),
    /// Withdrawn (or ended) at.
    Withdrawn(Option<DateTime<Utc>>),
    /// Expired at.
    Expired(Option<DateTime<Utc>>),
    /// The customer objected (legitimate interests, public task) at.
    Objected(DateTime<Utc>),
}

/// One purpose as the consents page shows it.
struct PurposeView {
    purpose: Purpose,
    standing: Standing,
    /// The choices given with the current record.
    choices: Choices,
}

/// Every purpose with where the customer stands, read from the subject export (the customer
/// is shown their own records through the recorded subject-access path).
fn purpose_views(export: &SubjectExport) -> Vec<PurposeView> {
    let now = Utc::now();
    export
        .purposes
        .iter()
        .map(|purpose| {
            let current = export
                .consents
                .iter()
                .rev()
                .find(|c| c.purpose.as_str() == purpose.id() && c.superseded_by.is_none());
            let objection = export
                .objections
                .iter()
                .filter(|o| o.purpose.as_str() == purpose.id())
                .map(|o| o.at)
                .max();
            let standing = match (current, objection) {
                (_, Some(at)) if current.is_none_or(|c| c.given_at <= at) => Standing::Objected(at),
                (None, _) => Standing::None,
                (Some(c), _) => match c.state(now) {
                    ConsentState::Withdrawn | ConsentState::Superseded => Standing::Withdrawn(c.withdrawn_at),
                    ConsentState::Expired => Standing::Expired(c.expires_at),
                    ConsentState::Given if c.notice_version < purpose.required_notice_version() => {
                        Standing::Outdated(c.notice_version)
                    }
                    ConsentState::Given => Standing::On(c.given_at),
                },
            };
            let choices = match (standing, current) {
                (Standing::On(_) | Standing::Outdated(_), Some(c)) => {
                    export.choices.get(&c.id).cloned().unwrap_or_default()
                }
                _ => Choices::new(),
            };
            PurposeView {
                purpose: purpose.clone(),
                standing,
                choices,
            }
        })
        .collect()
}

/// The fieldsets of a purpose's declared choices (checkboxes for a multi-choice, radio buttons
/// for a single choice), with `selected` checked.
fn choice_fields(h: &mut Html, purpose: &Purpose, selected: &Choices) {
    let id = purpose.id();
    for spec in purpose.choices() {
        let name = spec.name();
        h.raw("<fieldset><legend>")
            .text(&title_of(name))
            .raw(if spec.is_single() { " (pick one)" } else { " (pick any)" })
            .raw("</legend>\n");
        for option in spec.options() {
            let input = format!("c-{id}-{name}-{option}");
            let kind = if spec.is_single() { "radio" } else { "checkbox" };
            h.raw(&format!(
                "<input type=\"{kind}\" id=\"{input}\" name=\"choice.{name}\" value=\"{option}\"{}> ",
                if selected.is_selected(name, option) {
                    " checked"
                } else {
                    ""
                }
            ))
            .raw(&format!("<label for=\"{input}\">"))
            .text(&title_of(option))
            .raw("</label>\n");
        }
        h.raw("</fieldset>\n");
    }
}

/// One purpose's card: notice, state, choices, and what the customer can do.
fn purpose_card(h: &mut Html, view: &PurposeView, csrf: &str) {
    let purpose = &view.purpose;
    let id = purpose.id();
    let title = title_of(id);
    let fields: Vec<String> = purpose.field_names().map(field_words).collect();
    h.raw(&format!(
        "<section class=\"card\" aria-labelledby=\"p-{id}\" id=\"purpose-{id}\">\n"
    ))
    .raw(&format!("<h2 id=\"p-{id}\">"))
    .text(&title)
    .raw("</h2>\n<p class=\"meta\">")
    .text(basis_words(purpose.basis()));
    if purpose.is_sale_or_sharing() {
        h.raw(" · Shares your data with other companies");
    }
    h.raw(" · Privacy notice version ")
        .text(&purpose.required_notice_version().to_string())
        .raw(" · Uses your ")
        .text(&and_list(&fields))
        .raw("</p>\n<p class=\"notice-text\">")
        .text(purpose.description_text())
        .raw("</p>\n<p>Status: ");
    let consent = purpose.basis() == LawfulBasis::Consent;
    let date = |at: Option<DateTime<Utc>>| at.map(when).unwrap_or_default();
    let (class, words) = match view.standing {
        Standing::None if consent => ("off", "Off — you have not agreed".to_owned()),
        Standing::None => ("neutral", "Not in use for you".to_owned()),
        Standing::On(at) if consent => ("on", format!("On — you agreed on {}", when(at))),
        Standing::On(at) => ("on", format!("In use since {}", when(at))),
        Standing::Outdated(version) => (
            "off",
            format!("Paused — you agreed to version {version} of the notice; it has changed since"),
        ),
        Standing::Withdrawn(at) if consent => ("off", format!("Off — you withdrew on {}", date(at))),
        Standing::Withdrawn(at) => ("off", format!("Ended on {}", date(at))),
        Standing::Expired(at) => ("off", format!("Off — your agreement expired on {}", date(at))),
        Standing::Objected(at) => ("off", format!("Off — you objected on {}", when(at))),
    };
    h.raw(&format!("<span class=\"state {class}\">"))
        .text(&words)
        .raw("</span></p>\n");
    let has_choices = !purpose.choices().is_empty();
    match (purpose.basis(), view.standing) {
        (LawfulBasis::Consent, Standing::On(_)) => {
            if has_choices {
                h.raw(&format!(
                    "<form method=\"post\" action=\"/consents/{id}/choices\" class=\"choices\">\n"
                ))
                .csrf(csrf)
                .raw("<h3>Your choices</h3>\n");
                choice_fields(h, purpose, &view.choices);
                h.raw(&format!(
                    "<button type=\"submit\" class=\"secondary\" aria-describedby=\"p-{id}\">Save my choices</button></form>\n"
                ));
            }
            h.raw("<div class=\"actions\">\n");
            action_button(h, id, "withdraw", "Withdraw my consent", "secondary", csrf);
            h.raw("</div>\n");
        }
        (LawfulBasis::Consent, Standing::Objected(_)) => {}
        (LawfulBasis::Consent, standing) => {
            h.raw(&format!("<form method=\"post\" action=\"/consents/{id}/give\">\n"))
                .csrf(csrf);
            if has_choices {
                h.raw("<h3>Your choices</h3>\n");
                choice_fields(h, purpose, &view.choices);
            }
            let label = if matches!(standing, Standing::Outdated(_)) {
                "Agree to the new notice"
            } else {
                "I agree"
            };
            h.raw(&format!(
                "<div class=\"actions\"><button type=\"submit\" aria-describedby=\"p-{id}\">{label}</button></div></form>\n"
            ));
            if matches!(standing, Standing::Outdated(_)) {
                h.raw("<div class=\"actions\">\n");
                action_button(h, id, "withdraw", "Withdraw my consent", "secondary", csrf);
                h.raw("</div>\n");
            }
        }
        (basis, Standing::On(_)) if basis.allows_objection() => {
            h.raw("<div class=\"actions\">\n");
            action_button(h, id, "object", "I object", "secondary", csrf);
            h.raw("</div>\n");
        }
        (LawfulBasis::Contract, Standing::On(_)) => {
            h.raw("<p class=\"meta\">Needed while you have an account: it ends when you delete it.</p>\n");
        }
        _ => {}
    }
    h.raw("</section>\n");
}

/// A form of one button that posts to `/consents/{purpose}/{action}`.
fn action_button(h: &mut Html, purpose: &str, action: &str, label: &str, class: &str, csrf: &str) {
    h.raw(&format!(
        "<form method=\"post\" action=\"/consents/{purpose}/{action}\">"
    ))
    .csrf(csrf)
    .raw(&format!(
        "<button type=\"submit\" class=\"{class}\" aria-describedby=\"p-{purpose}\">"
    ))
    .text(label)
    .raw("</button></form>\n");
}

async fn consents_page(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let customer = match signed_in(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let id = customer.id;
    let loaded = blocking(&state, move |vault| {
        let export = vault
            .acting_as(ACTOR)?
            .export_customer(id, Evidence::new("preference-center").source("consents-page"))?;
        Ok(purpose_views(&export))
    })
    .await;
    let views = match loaded {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let mut body = Html::new();
    body.raw("<p>Each card is one thing we may use your data for, with the notice you agree to. ")
        .raw("Change your mind whenever you like: it takes effect at once.</p>\n");
    for view in &views {
        purpose_card(&mut body, view, &customer.csrf);
    }
    html(page(
        "Your consents",
        Nav::Consents,
        Some(&customer.csrf),
        &customer.notices,
        &body.into_string(),
    ))
}

/// The customer's choices for `purpose` as the form sent them: every `choice.NAME` field. A
/// multi-choice the purpose declares is always recorded (no box ticked: none selected); a
/// single choice only when one option was picked. A name the purpose does not declare is
/// passed on, for the vault to refuse.
fn form_choices(purpose: &Purpose, form: &Form) -> Choices {
    let mut names: Vec<&str> = form.0.iter().filter_map(|(k, _)| k.strip_prefix("choice.")).collect();
    for spec in purpose.choices() {
        if !spec.is_single() {
            names.push(spec.name());
        }
    }
    names.sort_unstable();
    names.dedup();
    let mut choices = Choices::new();
    for name in names {
        let key = format!("choice.{name}");
        let options: Vec<&str> = form
            .0
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
            .collect();
        choices = choices.select(name, options);
    }
    choices
}

/// What a consent action did, or what the page must ask first.
enum Acted {
    /// Done: the message for the next page.
    Done(String),
    /// Not possible for this purpose's basis.
    NotPossible,
    /// The request carries the GPC signal: the customer must confirm the opt-in.
    ConfirmDespiteGpc(Purpose),
}

async fn consent_action(
    State(state): State<Shared>,
    Path((purpose, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let customer = match signed_in_post(&state, &headers, &form).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let id = customer.id;
    let gpc = has_gpc(&headers);
    let confirmed = form.get("confirm_gpc") == Some("yes");
    let result = blocking(&state, move |vault| {
        let def = vault.purpose(&purpose)?;
        let title = title_of(def.id());
        let mut evidence = Evidence::new("preference-center")
            .source("consents-page")
            .notice_text(def.description_text());
        if gpc {
            evidence = evidence.gpc();
        }
        match (action.as_str(), def.basis()) {
            ("give", LawfulBasis::Consent) => {
                if confirmed {
                    evidence = evidence.explicit();
                }
                match vault
                    .acting_as(ACTOR)?
                    .give_consent_with(id, def.id(), evidence, &form_choices(&def, &form))
                {
                    Ok(_) => Ok(Acted::Done(format!("Thank you: {title} is on."))),
                    Err(Error::GpcConflict { .. }) => Ok(Acted::ConfirmDespiteGpc(def)),
                    Err(e) => Err(e),
                }
            }
            ("choices", LawfulBasis::Consent) => {
                // A record that stands while the signal is present was confirmed by the
                // customer despite it; saving its choices is their explicit act again.
                if gpc {
                    evidence = evidence.explicit();
                }
                vault
                    .acting_as(ACTOR)?
                    .change_choices(id, def.id(), &form_choices(&def, &form), evidence)?;
                Ok(Acted::Done(format!("Your choices for {title} are saved.")))
            }
            ("withdraw", LawfulBasis::Consent) => {
                vault.acting_as(ACTOR)?.withdraw_consent(id, def.id())?;
                Ok(Acted::Done(format!(
                    "{title} is off: we no longer use your data for it."
                )))
            }
            ("object", basis) if basis.allows_objection() => {
                vault.acting_as(ACTOR)?.object(id, def.id())?;
                Ok(Acted::Done(format!("Your objection is recorded: {title} is off.")))
            }
            _ => Ok(Acted::NotPossible),
        }
    })
    .await;
    match result {
        Ok(Acted::Done(message)) => {
            // What the GPC signal changed on this request, then what the form did.
            let mut notices = customer.notices.clone();
            notices.push(message);
            state.sessions.set_flash(&customer.sid, notices.join(" "));
            see_other("/consents")
        }
        Ok(Acted::ConfirmDespiteGpc(purpose)) => confirm_despite_gpc(&customer, &purpose, &body),
        Ok(Acted::NotPossible) => {
            AppError::BadRequest("That change is not possible for this purpose. Nothing was changed.").into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Asks the customer to confirm an opt-in their browser's GPC signal speaks against; the
/// form repeats their choices.
fn confirm_despite_gpc(customer: &Customer, purpose: &Purpose, body: &[u8]) -> Response {
    let id = purpose.id();
    let title = title_of(id);
    let form = Form::parse(body);
    let mut h = Html::new();
    h.raw("<p>Your browser sends the Global Privacy Control signal: it asks us not to sell or share your data ")
        .raw("and not to use it for direct marketing. ")
        .text(&title)
        .raw(" is one of those, so we turned it off.</p>\n<p>Do you want to turn it on anyway? We will remember that ")
        .raw("you chose this yourself.</p>\n")
        .raw(&format!(
            "<form method=\"post\" action=\"/consents/{id}/give\" class=\"card\">"
        ))
        .csrf(&customer.csrf)
        .raw("<input type=\"hidden\" name=\"confirm_gpc\" value=\"yes\">\n");
    for (k, v) in form.0.iter().filter(|(k, _)| k.starts_with("choice.")) {
        h.raw("<input type=\"hidden\" name=\"")
            .text(k)
            .raw("\" value=\"")
            .text(v)
            .raw("\">\n");
    }
    h.raw("<div class=\"actions\"><button type=\"submit\">Yes, turn ")
        .text(&title)
        .raw(" on</button> <a href=\"/consents\">No, keep it off</a></div></form>\n");
    html(page(
        "Turn it on despite your privacy signal?",
        Nav::Consents,
        Some(&customer.csrf),
        &customer.notices,
        &h.into_string(),
    ))
}

// ----- your data -----

/// A value of a subject export in words: a JSON string as its text, anything else as JSON.
fn value_words(json: &str) -> String {
    serde_json::from_str::<String>(json).unwrap_or_else(|_| json.to_owned())
}

async fn data_page(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let customer = match signed_in(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let id = customer.id;
    // The customer sees their data through the subject-access path: an audited export.
    let shown = blocking(&state, move |vault| {
        let export = vault
            .acting_as(ACTOR)?
            .export_customer(id, Evidence::new("preference-center").source("your-data-page"))?;
        let mut uses: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for purpose in &export.purposes {
            for field in purpose.field_names() {
                uses.entry(field.to_owned()).or_default().push(title_of(purpose.id()));
            }
        }
        let rows: Vec<(String, String, String)> = export
            .fields
            .iter()
            .map(|(name, value)| {
                let purposes = uses.get(name.as_str()).map(|p| and_list(p)).unwrap_or_default();
                (field_words(name.as_str()), value_words(value.expose()), purposes)
            })
            .collect();
        // The choices of the records in force.
        let now = Utc::now();
        let choices: Vec<(String, String)> = export
            .consents
            .iter()
            .filter(|c| c.state(now) == ConsentState::Given)
            .filter_map(|c| export.choices.get(&c.id).map(|ch| (c.purpose.as_str(), ch)))
            .flat_map(|(purpose, ch)| {
                ch.iter()
                    .map(|(name, options)| {
                        let options: Vec<String> = options.iter().map(|o| title_of(o)).collect();
                        (
                            format!("{}: {}", title_of(purpose), field_words(name)),
                            if options.is_empty() {
                                "none".to_owned()
                            } else {
                                and_list(&options)
                            },
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        Ok((
            rows,
            choices,
            export.consents.len(),
            export.audit_events.len(),
            export.restricted,
        ))
    })
    .await;
    let (rows, choices, consents, events, restricted) = match shown {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let mut body = Html::new();
    body.raw("<p>This is everything we hold about you, decrypted for you alone. ")
        .raw("Showing it to you is recorded, like every use of your data.</p>\n")
        .raw("<table>\n<caption class=\"meta\">The values we hold, and what each is used for</caption>\n<thead><tr><th scope=\"col\">What</th>")
        .raw("<th scope=\"col\">Value</th><th scope=\"col\">Used for</th></tr></thead>\n<tbody>\n");
    for (name, value, purposes) in &rows {
        body.raw("<tr><th scope=\"row\">")
            .text(name)
            .raw("</th><td>")
            .text(value)
            .raw("</td><td>")
            .text(purposes)
            .raw("</td></tr>\n");
    }
    body.raw("</tbody>\n</table>\n");
    if !choices.is_empty() {
        body.raw("<h2>Your choices</h2>\n<table>\n<thead><tr><th scope=\"col\">For</th><th scope=\"col\">You chose</th></tr></thead>\n<tbody>\n");
        for (what, chosen) in &choices {
            body.raw("<tr><th scope=\"row\">")
                .text(what)
                .raw("</th><td>")
                .text(chosen)
                .raw("</td></tr>\n");
        }
        body.raw("</tbody>\n</table>\n");
    }
    body.raw("<h2>Also kept</h2>\n<ul>\n<li>")
        .text(&format!(
            "{consents} records of what you agreed to (with their history)"
        ))
        .raw("</li>\n<li>")
        .text(&format!("{events} entries in the log of what happened to your data"))
        .raw("</li>\n<li>")
        .text(if restricted {
            "Processing of your data is restricted."
        } else {
            "Processing of your data is not restricted."
        })
        .raw("</li>\n</ul>\n<h2>Take it with you</h2>\n")
        .raw("<form method=\"post\" action=\"/data/export\">")
        .csrf(&customer.csrf)
        .raw("<p>A JSON file with all of the above, to keep or to give to another company.</p>")
        .raw("<button type=\"submit\">Download my data</button></form>\n");
    html(page(
        "Your data",
        Nav::Data,
        Some(&customer.csrf),
        &customer.notices,
        &body.into_string(),
    ))
}

async fn data_export(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let customer = match signed_in_post(&state, &headers, &form).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let id = customer.id;
    let json = blocking(&state, move |vault| {
        let export = vault
            .acting_as(ACTOR)?
            .export_customer(id, Evidence::new("preference-center").source("download"))?;
        Ok(export.to_json()?.to_vec())
    })
    .await;
    match json {
        Ok(json) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"my-data.json\""),
            ],
            Body::from(json),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

// ----- who used your data -----

/// Who acted, in words for the customer.
fn actor_words(actor: Option<&Actor>) -> String {
    match actor.map(Actor::as_str) {
        None => "one of our systems (before we recorded which)".to_owned(),
        Some(ACTOR) => "this preference center".to_owned(),
        Some(DEFAULT_ACTOR) => "our app".to_owned(),
        Some(other) => other.to_owned(),
    }
}

/// Why an access was refused, in words for the customer.
fn denial_words(reason: &str) -> &'static str {
    match reason {
        "withdrawn" => "you had withdrawn your consent",
        "no_consent" => "you had not agreed",
        "expired" => "your agreement had expired",
        "objected" => "you had objected",
        "restricted" => "the use of your data is restricted",
        "notice_outdated" => "you had not agreed to the new notice",
        _ => "it was not allowed",
    }
}

async fn activity_page(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let customer = match signed_in(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let id = customer.id;
    // Reading the log is itself recorded, in the preference center's name.
    let records = match blocking(&state, move |vault| vault.acting_as(ACTOR)?.access_log(id)).await {
        Ok(records) => records,
        Err(e) => return e.into_response(),
    };
    let mut lines = Vec::new();
    for record in records.iter().rev() {
        let at = when(record.at);
        let who = actor_words(record.actor.as_ref());
        let fields = and_list(
            &record
                .fields
                .iter()
                .map(|f| field_words(f.as_str()))
                .collect::<Vec<_>>(),
        );
        let title = record
            .purpose
            .as_ref()
            .map(|p| title_of(p.as_str()))
            .unwrap_or_default();
        let ours = record.actor.as_ref().is_some_and(|a| a.as_str() == ACTOR);
        let line = match &record.kind {
            AccessKind::Granted => format!("On {at}, {who} used your {fields} for {title}."),
            AccessKind::Denied { reason } => format!(
                "On {at}, {who} asked to use your {fields} for {title} and was refused: {}.",
                denial_words(reason)
            ),
            AccessKind::Exported if ours => {
                format!("On {at}, you looked at your data here (a full copy, for you alone).")
            }
            AccessKind::Exported => format!("On {at}, {who} made a full copy of your data for you."),
            AccessKind::LookedUp if ours => {
                format!("On {at}, you asked for a sign-in link: we found your account by your {fields}.")
            }
            AccessKind::LookedUp => format!("On {at}, {who} found your account by your {fields}."),
            AccessKind::Written => format!("On {at}, {who} recorded your {fields}."),
            // Reads of this page, and the rest, are not uses of your data.
            _ => continue,
        };
        lines.push(line);
    }
    let mut body = Html::new();
    body.raw("<p>Every time someone opens your data, egard records it first, with who it was and why. ")
        .raw("Newest first.</p>\n");
    if lines.is_empty() {
        body.raw("<p>No one has used your data yet.</p>\n");
    } else {
        body.raw("<ol class=\"log\">\n");
        // The same thing several times in a row (a page viewed again) is one line.
        let mut i = 0;
        while let Some(line) = lines.get(i) {
            let repeats = lines[i..].iter().take_while(|l| *l == line).count();
            body.raw("<li>").text(line);
            if repeats > 1 {
                body.text(&format!(" ({repeats} times)"));
            }
            body.raw("</li>\n");
            i += repeats;
        }
        body.raw("</ol>\n");
    }
    html(page(
        "Who used your data",
        Nav::Activity,
        Some(&customer.csrf),
        &customer.notices,
        &body.into_string(),
    ))
}

// ----- delete my account -----

fn delete_form(customer: &Customer, status: StatusCode, error: Option<&str>) -> Response {
    let mut body = Html::new();
    body.raw("<p>Deleting your account destroys the keys your data is encrypted with: every copy of it, ")
        .raw("backups included, can never be read again. We keep a record that it happened, with no data of yours in it.</p>\n")
        .raw("<p><strong>This cannot be undone.</strong> You may want to <a href=\"/data\">download your data</a> first.</p>\n");
    if let Some(error) = error {
        body.raw("<p class=\"error\" id=\"confirm-error\">")
            .text(error)
            .raw("</p>\n");
    }
    body.raw("<form method=\"post\" action=\"/delete\" class=\"card\">")
        .csrf(&customer.csrf)
        .raw("<p><input type=\"checkbox\" id=\"confirm\" name=\"confirm\" value=\"yes\" required");
    if error.is_some() {
        body.raw(" aria-invalid=\"true\" aria-describedby=\"confirm-error\"");
    }
    body.raw(
        "> <label for=\"confirm\">I understand that my account and all my data will be deleted for good.</label></p>\n",
    )
    .raw("<button type=\"submit\" class=\"danger\">Delete my account</button></form>\n");
    (
        status,
        html(page(
            "Delete my account",
            Nav::Delete,
            Some(&customer.csrf),
            &customer.notices,
            &body.into_string(),
        )),
    )
        .into_response()
}

async fn delete_page(State(state): State<Shared>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers).await {
        Ok(customer) => delete_form(&customer, StatusCode::OK, None),
        Err(r) => r,
    }
}

async fn delete_submit(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let customer = match signed_in_post(&state, &headers, &form).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if form.get("confirm") != Some("yes") {
        return delete_form(
            &customer,
            StatusCode::BAD_REQUEST,
            Some("Tick the box to confirm. Nothing was deleted."),
        );
    }
    let id = customer.id;
    let receipt = match blocking(&state, move |vault| vault.acting_as(ACTOR)?.erase_customer(id)).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    state.sessions.end_all(id);
    let fields: Vec<String> = receipt.fields.iter().map(|f| field_words(f.as_str())).collect();
    let mut body = Html::new();
    body.raw("<p class=\"card\">Your account was deleted on ")
        .text(&when(receipt.erased_at))
        .raw(". You are signed out.</p>\n<h2>Erasure receipt</h2>\n<dl>\n<dt>Data destroyed</dt><dd>")
        .text(&if fields.is_empty() {
            "none was stored".to_owned()
        } else {
            and_list(&fields)
        })
        .raw("</dd>\n<dt>Encryption keys destroyed</dt><dd>")
        .text(&receipt.key_versions.len().to_string())
        .raw("</dd>\n<dt>Account reference</dt><dd><code>")
        .text(&receipt.customer.to_string())
        .raw("</code></dd>\n<dt>Receipt seal</dt><dd><code>")
        .text(&crate::session::hex(&receipt.mac))
        .raw("</code></dd>\n</dl>\n<p>Every copy of your data, backups included, was encrypted with these keys ")
        .raw("and can no longer be read. Keep this page if you want a proof: the seal lets us check it.</p>\n")
        .raw("<p><a href=\"/signin\">Back to the start</a></p>\n");
    let mut response = html(page(
        "Your account is deleted",
        Nav::None,
        None,
        &[],
        &body.into_string(),
    ));
    if let Ok(cookie) = HeaderValue::from_str(&state.clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}
