//! The web console: server-rendered pages (maud) for RA staff, sponsors, privacy officers and
//! every holder, at `/console/`.
//!
//! The console is a client of the service like the JSON API: every page calls the same use
//! case the API does, with the same actor, so the service decides what each person may see
//! and do and audits it; the console only chooses which links to offer. It runs a script of
//! its own on two pages only, each talking to the workstation agent alone: the sign-in page
//! (the card approves, as on the OpenID Connect sign-in page) and a profile's card ceremonies.
//! Every form carries a token derived
//! from the browser's secret (CSRF), the cookie is `HttpOnly; SameSite=Strict` (and `Secure`
//! under the `__Host-` prefix when careid serves TLS), and every page is sent with a strict
//! Content-Security-Policy: styles from careid only, scripts only by nonce, no frames, forms to
//! careid.

mod chart;
mod pages;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use careid_domain::access::{Actor, RaAction, RaFunction};
use careid_domain::login::SessionEnd;
use careid_service::RequestContext;
use maud::{DOCTYPE, Markup, html};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::App;
use crate::error::ApiError;
use crate::extract::request_context;

/// The routes of the console, merged into careid's router.
pub fn router() -> Router<App> {
    Router::new()
        .route("/", get(|| async { redirect("/console/") }))
        .route("/console", get(|| async { redirect("/console/") }))
        .route("/console/", get(pages::home))
        .route("/console/console.css", get(stylesheet))
        .route("/console/sign-in", get(pages::sign_in))
        .route("/console/sign-in/credential", post(pages::sign_in_with_credential))
        .route("/console/sign-out", post(pages::sign_out))
        .route("/console/terms", get(pages::terms))
        .route("/console/activity", get(pages::activity))
        .route("/console/activity/{seq}/not-me", post(pages::not_me))
        .route("/console/activity/{seq}/proof", get(pages::proof))
        .route("/console/sessions", get(pages::sessions))
        .route("/console/sessions/{id}/end", post(pages::end_session))
        .route("/console/card", get(pages::my_card))
        .route("/console/queue", get(pages::queue))
        .route("/console/registrations/{id}/verify", post(pages::verify))
        .route("/console/requests/{id}/grant", post(pages::grant))
        .route("/console/requests/{id}/reject", post(pages::reject))
        .route("/console/people", get(pages::people))
        .route("/console/people/{uuid}", get(pages::person))
        .route("/console/people/{uuid}/absences", post(pages::record_absence))
        .route("/console/team", get(pages::team))
        .route("/console/organisations", get(pages::organisations))
        .route("/console/organisations/{ods}", get(pages::organisation))
        .route("/console/register", get(pages::register).post(pages::submit_registration))
        .route("/console/cards/{id}/report", post(pages::report_card))
        .route("/console/cards/{id}/cancel", post(pages::cancel_card))
        .route("/console/import", get(pages::import).post(pages::import_people))
        .route("/console/import/preview", post(pages::import_preview))
        .route("/console/cases", get(pages::cases))
        .route("/console/cases/{id}", get(pages::case))
        .route("/console/cases/{id}/notes", post(pages::note_case))
        .route("/console/alerts", get(pages::alerts))
        .route("/console/dashboard", get(pages::dashboard))
}

const STYLESHEET: &str = include_str!("console.css");

async fn stylesheet() -> Response {
    let mut response = STYLESHEET.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
    response
}

/// The cookie that holds the browser's secret. Under TLS it carries the `__Host-` prefix,
/// which browsers accept only when it is `Secure`, host-only and for the whole site.
fn cookie_name(secure: bool) -> &'static str {
    if secure { "__Host-careid-console" } else { "careid-console" }
}

/// The `Set-Cookie` value that gives the browser `secret` (or, with `None`, takes it away).
fn cookie(tls: bool, secret: Option<&str>) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    let value = match secret {
        Some(secret) => format!("{}={secret}; Path=/; HttpOnly; SameSite=Strict{secure}", cookie_name(tls)),
        None => format!("{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}", cookie_name(tls)),
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("careid-console=; Max-Age=0"))
}

/// The browser's secret, from its cookie.
fn browser_secret(tls: bool, headers: &HeaderMap) -> Option<String> {
    let name = cookie_name(tls);
    headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        let good = v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit());
        (k == name && good).then(|| v.to_owned())
    })
}

/// A fresh browser secret: 32 random bytes, hex.
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

/// The token every form of this browser's console carries: derived from its secret, which no
/// other site can read, so a form posted from elsewhere cannot carry it.
fn csrf_token(secret: &str) -> String {
    let digest = Sha256::new().chain_update(b"careid console form\n").chain_update(secret.as_bytes()).finalize();
    hex::encode(&digest[..16])
}

/// Whether `token` is the form token of the browser holding `secret`, compared as digests so
/// that the comparison's time says nothing of the token.
fn csrf_ok(secret: &str, token: &str) -> bool {
    Sha256::digest(token.as_bytes()) == Sha256::digest(csrf_token(secret).as_bytes())
}

/// A person signed in to the console: their card session's actor, and the token their forms
/// carry.
pub(crate) struct Signed {
    pub ctx: RequestContext,
    pub actor: Actor,
    pub csrf: String,
    secret: String,
}

impl FromRequestParts<App> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Signed, Response> {
        let Some(secret) = browser_secret(app.secure_cookies, &parts.headers) else {
            return Err(redirect("/console/sign-in"));
        };
        match app.service.console_actor(&secret).await {
            Ok(actor) => Ok(Signed { ctx: request_context(parts), actor, csrf: csrf_token(&secret), secret }),
            Err(failed @ careid_service::AuthenticateError::Store(_)) => Err(Failed::from(failed).into_response()),
            // Signed out, the card taken out, the position ended: sign in again, told why.
            Err(why) => {
                let ended = match app.service.console_ended(&secret).await {
                    Ok(Some(end)) => end.code(),
                    _ => ended_code(&why),
                };
                Err(redirect(&format!("/console/sign-in?ended={ended}")))
            }
        }
    }
}

/// Why the console's session is over where careid has no recorded end (it lapsed).
fn ended_code(why: &careid_service::AuthenticateError) -> &'static str {
    match why {
        careid_service::AuthenticateError::Expired => SessionEnd::PresenceLost.code(),
        careid_service::AuthenticateError::PositionEnded => SessionEnd::PositionEnded.code(),
        _ => SessionEnd::SignedOut.code(),
    }
}

/// A form posted by a signed-in person: its CSRF token checked before anything else is read.
pub(crate) struct Posted<T>(pub Signed, pub T);

impl<T: DeserializeOwned> FromRequest<App> for Posted<T> {
    type Rejection = Response;

    async fn from_request(request: Request, app: &App) -> Result<Posted<T>, Response> {
        let (mut parts, body) = request.into_parts();
        let signed = Signed::from_request_parts(&mut parts, app).await?;
        let bad = |message: String| Failed(ApiError::malformed(message)).into_response();
        let bytes = axum::body::to_bytes(body, 64 * 1024).await.map_err(|e| bad(format!("the form: {e}")))?;
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(&bytes).map_err(|e| bad(format!("the form: {e}")))?;
        let token = pairs.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str());
        if !token.is_some_and(|t| csrf_ok(&signed.secret, t)) {
            let refused = ApiError::new(
                StatusCode::FORBIDDEN,
                "form_expired",
                "this form is not from your console session: reload the page and try again",
            );
            return Err(Failed(refused).into_response());
        }
        let value = serde_urlencoded::from_bytes(&bytes).map_err(|e| bad(format!("the form: {e}")))?;
        Ok(Posted(signed, value))
    }
}

/// A `303 See Other` to `to` (after a form, so that a reload does not post it again).
pub(crate) fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, value);
    }
    secure(response.headers_mut(), None, None);
    response
}

/// The headers of every console page: strict CSP (styles from careid; a script only by
/// `nonce`, and requests only to the local `agent`, on the pages that talk to it), never
/// framed or cached.
fn secure(headers: &mut HeaderMap, nonce: Option<&str>, agent: Option<&str>) {
    let script = nonce.map(|n| format!(" script-src 'nonce-{n}';")).unwrap_or_default();
    let connect = agent.map(|a| format!(" connect-src {a};")).unwrap_or_default();
    let policy = format!(
        "default-src 'none'; style-src 'self'; img-src 'self';{script}{connect} form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&policy) {
        headers.insert(CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
}

/// An HTML page with the console's headers.
pub(crate) fn respond(status: StatusCode, page: Markup) -> Response {
    let mut response = (status, axum::response::Html(page.into_string())).into_response();
    secure(response.headers_mut(), None, None);
    response
}

/// A page whose `script` asks the workstation agent for the card: the script runs by a fresh
/// nonce, and the page may reach the agent on 127.0.0.1 and nothing else.
pub(crate) fn respond_with_agent_script(
    app: &App,
    status: StatusCode,
    title: &str,
    signed: Option<&Signed>,
    content: &Markup,
    script: impl FnOnce(&str) -> String,
) -> Response {
    let nonce = new_secret();
    let agent = format!("http://127.0.0.1:{}", app.oidc.as_ref().map_or(7390, |o| o.agent_port));
    let script = script(&agent);
    let content = html! { (content) script nonce=(nonce) { (maud::PreEscaped(script)) } };
    let mut response = (status, axum::response::Html(layout(title, signed, &content).into_string())).into_response();
    secure(response.headers_mut(), Some(&nonce), Some(&agent));
    response
}

/// A use case's refusal or failure, shown as a page: the same status, message and rule the API
/// gives, and nothing of careid's internals.
pub(crate) struct Failed(pub ApiError);

impl<E: Into<ApiError>> From<E> for Failed {
    fn from(e: E) -> Failed {
        Failed(e.into())
    }
}

impl IntoResponse for Failed {
    fn into_response(self) -> Response {
        let detail = &self.0.detail;
        let page = layout(
            "Not done",
            None,
            &html! {
                h1 { "Not done" }
                div.notice.error role="alert" {
                    p #error { (detail.message) }
                    @if let Some(rule) = &detail.rule { p { "Rule: " code { (rule) } } }
                    @if let Some(field) = &detail.field { p { "Field: " code { (field) } } }
                }
                p { a href="/console/" { "Back to the console" } }
            },
        );
        respond(self.0.status, page)
    }
}

pub(crate) type Page = Result<Response, Failed>;

/// The links this actor's functions make useful. The service still decides every request.
fn nav_links(actor: &Actor) -> Vec<(&'static str, &'static str)> {
    let mut links = vec![
        ("/console/", "Home"),
        ("/console/activity", "My activity"),
        ("/console/sessions", "My sessions"),
        ("/console/card", "My card"),
    ];
    let allowed = |a: RaAction| actor.permission(a) != careid_domain::access::Permission::Denied;
    if allowed(RaAction::DecideRequest) || allowed(RaAction::CreateProfile) {
        links.push(("/console/queue", "Work queue"));
    }
    if allowed(RaAction::CreateProfile)
        || allowed(RaAction::ReadAudit)
        || actor.functions.contains(&RaFunction::Sponsor)
    {
        links.push(("/console/people", "People"));
    }
    if !actor.functions.is_empty() {
        links.push(("/console/organisations", "Organisations"));
    }
    if actor.functions.contains(&RaFunction::Sponsor) {
        links.push(("/console/team", "My team"));
        links.push(("/console/register", "Pre-register"));
    }
    if allowed(RaAction::ImportPeople) {
        links.push(("/console/import", "Bulk import"));
    }
    if allowed(RaAction::WorkCases) {
        links.push(("/console/cases", "Cases"));
        links.push(("/console/alerts", "Alerts"));
    }
    if allowed(RaAction::ViewReports) {
        links.push(("/console/dashboard", "Dashboard"));
    }
    links
}

/// The frame of every page: a skip link, the header with who is signed in, the navigation
/// by role, and the page's own content in `main`.
pub(crate) fn layout(title: &str, signed: Option<&Signed>, content: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – careid" }
                link rel="stylesheet" href="/console/console.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    p.brand { a href="/console/" { "careid" } }
                    @if let Some(signed) = signed {
                        p.who {
                            "Signed in as " strong { (signed.actor.person) }
                            " · " (signed.actor.role) " at " (signed.actor.org)
                        }
                        form method="post" action="/console/sign-out" {
                            input type="hidden" name="csrf" value=(signed.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                @if let Some(signed) = signed {
                    nav aria-label="Console" {
                        ul {
                            @for (href, label) in nav_links(&signed.actor) {
                                li { a href=(href) { (label) } }
                            }
                        }
                    }
                }
                main #main tabindex="-1" { (content) }
                footer { p { "careid · " a href="/console/terms" { "Terms of use" } } }
            }
        }
    }
}

/// A hidden CSRF field for a form.
pub(crate) fn csrf_field(signed: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed.csrf); }
}

/// A table with a caption, a header row and text cells.
pub(crate) fn table(caption: &str, columns: &[&str], rows: &[Vec<Markup>]) -> Markup {
    html! {
        @if rows.is_empty() {
            p.empty { (caption) ": none." }
        } @else {
            div.scroll {
                table {
                    caption { (caption) }
                    thead { tr { @for c in columns { th scope="col" { (c) } } } }
                    tbody { @for row in rows { tr { @for cell in row { td { (cell) } } } } }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_token_is_the_secrets_own_and_differs_between_browsers() {
        let (a, b) = (new_secret(), new_secret());
        assert_eq!(csrf_token(&a), csrf_token(&a));
        assert_ne!(csrf_token(&a), csrf_token(&b));
        assert!(!csrf_token(&a).contains(&a[..16]), "the token does not reveal the secret");
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_under_tls() {
        let plain = cookie(false, Some("ab")).to_str().unwrap().to_owned();
        assert!(
            plain.starts_with("careid-console=ab;") && plain.contains("HttpOnly") && plain.contains("SameSite=Strict")
        );
        assert!(!plain.contains("Secure"));
        let tls = cookie(true, Some("ab")).to_str().unwrap().to_owned();
        assert!(tls.starts_with("__Host-careid-console=ab;") && tls.contains("; Secure") && tls.contains("Path=/"));
        let mut headers = HeaderMap::new();
        let secret = new_secret();
        headers.insert(COOKIE, HeaderValue::from_str(&format!("other=1; __Host-careid-console={secret}")).unwrap());
        assert_eq!(browser_secret(true, &headers).as_deref(), Some(secret.as_str()));
        headers.insert(COOKIE, HeaderValue::from_str(&format!("careid-console={secret}")).unwrap());
        assert_eq!(browser_secret(true, &headers), None, "under TLS only the prefixed cookie counts");
        assert_eq!(browser_secret(false, &headers).as_deref(), Some(secret.as_str()));
    }

    #[test]
    fn every_page_forbids_frames_and_foreign_scripts() {
        let response = respond(StatusCode::OK, html! { p { "x" } });
        let csp = response.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("script-src"), "no page but the sign-in page runs a script: {csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
    }
}
