//! The workstation agent's local endpoint on 127.0.0.1: careid's sign-in page asks it for the
//! card's approval of an authorization request, and local applications ask it for an access
//! token for the current card session (RFC 8693 token exchange, done by the agent with the
//! session's token, which never leaves the agent).
//!
//! An RA's agent can also run card ceremonies that careid's console starts, on a second reader
//! (`--ceremony-virtual`, `--ceremony-slot`), with the RA's session; the holder types their
//! passcode at the agent, never in the browser.
//!
//! The card stays with the agent's main loop: requests reach it over a channel and are
//! answered there, and the holder confirms at the agent every approval and the first token for
//! each application. Who may ask at all:
//! - a local program presents the agent's key (`Authorization: Bearer`), a secret the agent
//!   writes at start, readable by its user only: another user of a shared or remote-desktop
//!   host cannot read it, so cannot act as the holder;
//! - careid's own sign-in page may ask for an approval without the key: the endpoint checks
//!   `Origin` itself (CORS alone would still let a foreign page send a request it cannot read),
//!   and JSON bodies force a CORS preflight. A local program can claim any `Origin`, which is
//!   why every approval waits for the holder.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, AUTHORIZATION, ORIGIN,
    VARY,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

/// What a local caller asks of the card session.
#[derive(Debug)]
pub enum LocalRequest {
    /// The card approves an authorization request; the answer is where the browser goes.
    Authorize { authorization: String, reply: oneshot::Sender<Result<String, String>> },
    /// An access token for `audience` (a registered application's client id).
    Token { audience: String, reply: oneshot::Sender<Result<Value, String>> },
    /// One of the RA's card ceremonies on the card in the agent's ceremony reader, started from
    /// careid's console: `issue` to `person`, or `first_passcode`, `unlock`, `renew`, `repair`
    /// or `clear` of `card`. The answer is the ceremony's result.
    Ceremony {
        ceremony: String,
        card: Option<i64>,
        person: Option<String>,
        reply: oneshot::Sender<Result<Value, String>>,
    },
}

#[derive(Debug, Clone)]
struct Local {
    requests: mpsc::Sender<LocalRequest>,
    /// careid's origin (`http://host:port`): the only one whose pages may call.
    origin: String,
    /// The key local programs present, as written to the key file.
    key: std::sync::Arc<str>,
}

/// Where the agent writes its key: the user's runtime directory (`$XDG_RUNTIME_DIR`, private to
/// the user on a systemd host), else careid's CLI home.
pub fn key_file(port: u16) -> std::path::PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map_or_else(crate::client::cli_home, |d| std::path::PathBuf::from(d).join("careid"));
    dir.join(format!("agent-{port}.key"))
}

/// A fresh key, written to `key_file(port)` readable by its owner only.
fn write_key(port: u16) -> anyhow::Result<(String, std::path::PathBuf)> {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!("careid-agent-{}", hex::encode(bytes));
    let file = key_file(port);
    if let Some(dir) = file.parent() {
        crate::client::private_dir(dir)?;
    }
    crate::client::write_private(&file, key.as_bytes())?;
    Ok((key, file))
}

/// The origin of a server URL: scheme, host and port.
pub fn origin_of(server: &str) -> String {
    let server = server.trim_end_matches('/');
    match server.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or_default()),
        None => server.to_owned(),
    }
}

/// Serves the endpoint on `127.0.0.1:port` until the agent stops; returns the port and the
/// file holding the key local programs present.
pub async fn serve(
    port: u16,
    server: &str,
    requests: mpsc::Sender<LocalRequest>,
) -> anyhow::Result<(u16, std::path::PathBuf)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| anyhow::anyhow!("the agent's local endpoint cannot listen on 127.0.0.1:{port}: {e}"))?;
    let port = listener.local_addr()?.port();
    let (key, file) = write_key(port)?;
    let local = Local { requests, origin: origin_of(server), key: key.into() };
    let app = Router::new()
        .route("/v1/authorize", post(authorize).options(preflight))
        .route("/v1/token", post(token).options(preflight))
        .route("/v1/ceremony", post(ceremony).options(preflight))
        .with_state(local);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::warn!(%error, "the agent's local endpoint stopped");
        }
    });
    Ok((port, file))
}

fn failure(status: StatusCode, message: &str) -> (StatusCode, Json<Value>) {
    (status, Json(json!({ "error": { "code": "agent_refused", "message": message } })))
}

/// A caller the agent does not answer.
enum Refused {
    /// A page from another origin than careid's.
    ForeignOrigin,
    /// A program without the agent's key.
    NoKey,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::ForeignOrigin => failure(StatusCode::FORBIDDEN, "this page may not use your card").into_response(),
            Refused::NoKey => failure(
                StatusCode::UNAUTHORIZED,
                "present the agent's key (Authorization: Bearer, from the key file the agent names at start)",
            )
            .into_response(),
        }
    }
}

/// Whether the request carries the agent's key, compared in constant time.
fn has_key(local: &Local, headers: &HeaderMap) -> bool {
    let Some(given) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return false };
    let Some((scheme, given)) = given.split_once(' ') else { return false };
    let (given, key) = (given.trim().as_bytes(), local.key.as_bytes());
    scheme.eq_ignore_ascii_case("bearer")
        && given.len() == key.len()
        && given.iter().zip(key).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

/// A caller of the approval endpoint: a program with the agent's key, or careid's own page
/// (its `Origin`); a page from anywhere else is refused, and so is a caller with neither.
fn keyed_or_careids_page(local: &Local, headers: &HeaderMap) -> Result<Option<HeaderValue>, Refused> {
    let careids = |o: &&HeaderValue| o.as_bytes() == local.origin.as_bytes();
    match (has_key(local, headers), headers.get(ORIGIN)) {
        (true, origin) => Ok(origin.filter(careids).cloned()),
        (false, Some(origin)) if careids(&origin) => Ok(Some(origin.clone())),
        (false, Some(_)) => Err(Refused::ForeignOrigin),
        (false, None) => Err(Refused::NoKey),
    }
}

/// A caller of the token endpoint: only a program with the agent's key; no page has a use for
/// it, careid's own included.
fn keyed(local: &Local, headers: &HeaderMap) -> Result<Option<HeaderValue>, Refused> {
    if has_key(local, headers) {
        return Ok(headers.get(ORIGIN).filter(|o| o.as_bytes() == local.origin.as_bytes()).cloned());
    }
    match headers.get(ORIGIN) {
        Some(origin) if origin.as_bytes() != local.origin.as_bytes() => Err(Refused::ForeignOrigin),
        _ => Err(Refused::NoKey),
    }
}

fn cors(mut response: Response, origin: Option<HeaderValue>) -> Response {
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(VARY, HeaderValue::from_static("Origin"));
    }
    response
}

async fn preflight(State(local): State<Local>, headers: HeaderMap) -> Response {
    match headers.get(ORIGIN).filter(|o| o.as_bytes() == local.origin.as_bytes()).cloned().ok_or(Refused::ForeignOrigin)
    {
        Ok(origin) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            let h = response.headers_mut();
            h.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
            h.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type"));
            h.insert("access-control-allow-private-network", HeaderValue::from_static("true"));
            cors(response, Some(origin))
        }
        Err(refused) => refused.into_response(),
    }
}

async fn ask<T>(
    local: &Local,
    make: impl FnOnce(oneshot::Sender<Result<T, String>>) -> LocalRequest,
) -> Result<T, String> {
    let (reply, answer) = oneshot::channel();
    local.requests.send(make(reply)).await.map_err(|_| "the agent is stopping".to_owned())?;
    answer.await.map_err(|_| "the agent dropped the request".to_owned())?
}

async fn authorize(State(local): State<Local>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let origin = match keyed_or_careids_page(&local, &headers) {
        Ok(origin) => origin,
        Err(refused) => return refused.into_response(),
    };
    let Some(authorization) = body["authorization"].as_str().map(str::to_owned) else {
        return cors(failure(StatusCode::BAD_REQUEST, "authorization is required").into_response(), origin);
    };
    let response = match ask(&local, |reply| LocalRequest::Authorize { authorization, reply }).await {
        Ok(redirect) => Json(json!({ "redirect": redirect })).into_response(),
        Err(message) => failure(StatusCode::CONFLICT, &message).into_response(),
    };
    cors(response, origin)
}

async fn token(State(local): State<Local>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let origin = match keyed(&local, &headers) {
        Ok(origin) => origin,
        Err(refused) => return refused.into_response(),
    };
    let Some(audience) = body["audience"].as_str().map(str::to_owned) else {
        return cors(
            failure(StatusCode::BAD_REQUEST, "audience (the application's client_id) is required").into_response(),
            origin,
        );
    };
    let response = match ask(&local, |reply| LocalRequest::Token { audience, reply }).await {
        Ok(token) => Json(token).into_response(),
        Err(message) => failure(StatusCode::CONFLICT, &message).into_response(),
    };
    cors(response, origin)
}

/// careid's console asks for a card ceremony in the ceremony reader (or a program with the key).
async fn ceremony(State(local): State<Local>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let origin = match keyed_or_careids_page(&local, &headers) {
        Ok(origin) => origin,
        Err(refused) => return refused.into_response(),
    };
    let known = ["issue", "first_passcode", "unlock", "renew", "repair", "clear"];
    let Some(name) = body["ceremony"].as_str().filter(|c| known.contains(c)).map(str::to_owned) else {
        let message = format!("ceremony must be one of {}", known.join(", "));
        return cors(failure(StatusCode::BAD_REQUEST, &message).into_response(), origin);
    };
    let (card, person) = (body["card_id"].as_i64(), body["person"].as_str().map(str::to_owned));
    let response = match ask(&local, |reply| LocalRequest::Ceremony { ceremony: name, card, person, reply }).await {
        Ok(done) => Json(done).into_response(),
        Err(message) => failure(StatusCode::CONFLICT, &message).into_response(),
    };
    cors(response, origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_key_or_careids_own_page_is_answered() {
        let (requests, _) = mpsc::channel(1);
        let local = Local { requests, origin: "http://careid:8420".into(), key: "careid-agent-k3y".into() };
        let headers = |pairs: &[(axum::http::HeaderName, &str)]| {
            let mut h = HeaderMap::new();
            for (name, value) in pairs {
                h.insert(name.clone(), HeaderValue::from_str(value).unwrap());
            }
            h
        };
        let key = (AUTHORIZATION, "Bearer careid-agent-k3y");
        let page = (ORIGIN, "http://careid:8420");
        let foreign = (ORIGIN, "https://evil.example");
        // The approval endpoint: the key, or careid's page; nothing else.
        assert!(keyed_or_careids_page(&local, &headers(std::slice::from_ref(&key))).is_ok());
        assert!(keyed_or_careids_page(&local, &headers(std::slice::from_ref(&page))).is_ok());
        assert!(matches!(keyed_or_careids_page(&local, &headers(&[])), Err(Refused::NoKey)));
        assert!(matches!(
            keyed_or_careids_page(&local, &headers(std::slice::from_ref(&foreign))),
            Err(Refused::ForeignOrigin)
        ));
        let wrong = (AUTHORIZATION, "Bearer careid-agent-k3x");
        assert!(matches!(keyed_or_careids_page(&local, &headers(&[wrong])), Err(Refused::NoKey)));
        // The token endpoint: the key only; claiming careid's origin is not enough.
        assert!(keyed(&local, &headers(&[key])).is_ok());
        assert!(matches!(keyed(&local, &headers(&[page])), Err(Refused::NoKey)));
        assert!(matches!(keyed(&local, &headers(&[foreign])), Err(Refused::ForeignOrigin)));
    }

    #[test]
    fn the_origin_is_scheme_host_and_port() {
        assert_eq!(origin_of("http://127.0.0.1:8420/"), "http://127.0.0.1:8420");
        assert_eq!(origin_of("https://careid.example.nhs.uk/base"), "https://careid.example.nhs.uk");
    }
}
