//! The workstation agent's local endpoint on 127.0.0.1: careid's sign-in page asks it for the
//! card's approval of an authorization request, and local applications ask it for an access
//! token for the current card session (RFC 8693 token exchange, done by the agent with the
//! session's token, which never leaves the agent).
//!
//! The card stays with the agent's main loop: requests reach it over a channel and are
//! answered there. A browser page may call only from careid's own origin: the endpoint checks
//! `Origin` itself (CORS alone would still let a foreign page send a request it cannot read),
//! and JSON bodies force a CORS preflight.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ORIGIN, VARY,
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
}

#[derive(Debug, Clone)]
struct Local {
    requests: mpsc::Sender<LocalRequest>,
    /// careid's origin (`http://host:port`): the only one whose pages may call.
    origin: String,
}

/// The origin of a server URL: scheme, host and port.
pub fn origin_of(server: &str) -> String {
    let server = server.trim_end_matches('/');
    match server.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or_default()),
        None => server.to_owned(),
    }
}

/// Serves the endpoint on `127.0.0.1:port` until the agent stops.
pub async fn serve(port: u16, server: &str, requests: mpsc::Sender<LocalRequest>) -> anyhow::Result<u16> {
    let local = Local { requests, origin: origin_of(server) };
    let app = Router::new()
        .route("/v1/authorize", post(authorize).options(preflight))
        .route("/v1/token", post(token).options(preflight))
        .with_state(local);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| anyhow::anyhow!("the agent's local endpoint cannot listen on 127.0.0.1:{port}: {e}"))?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::warn!(%error, "the agent's local endpoint stopped");
        }
    });
    Ok(port)
}

fn failure(status: StatusCode, message: &str) -> (StatusCode, Json<Value>) {
    (status, Json(json!({ "error": { "code": "agent_refused", "message": message } })))
}

/// A page from another origin than careid's asked.
struct ForeignOrigin;

impl IntoResponse for ForeignOrigin {
    fn into_response(self) -> Response {
        failure(StatusCode::FORBIDDEN, "this page may not use your card").into_response()
    }
}

/// Refuses a browser page from any origin but careid's; callers without `Origin` (local
/// programs) pass.
fn check_origin(local: &Local, headers: &HeaderMap) -> Result<Option<HeaderValue>, ForeignOrigin> {
    match headers.get(ORIGIN) {
        None => Ok(None),
        Some(origin) if origin.as_bytes() == local.origin.as_bytes() => Ok(Some(origin.clone())),
        Some(_) => Err(ForeignOrigin),
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
    match check_origin(&local, &headers) {
        Ok(origin) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            let h = response.headers_mut();
            h.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
            h.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type"));
            h.insert("access-control-allow-private-network", HeaderValue::from_static("true"));
            cors(response, origin)
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
    let origin = match check_origin(&local, &headers) {
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
    let origin = match check_origin(&local, &headers) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_is_scheme_host_and_port() {
        assert_eq!(origin_of("http://127.0.0.1:8420/"), "http://127.0.0.1:8420");
        assert_eq!(origin_of("https://careid.example.nhs.uk/base"), "https://careid.example.nhs.uk");
    }
}
