//! Request plumbing: request ids, error bodies, metrics, authentication, and extractors whose
//! rejections speak the API's error format.

use std::time::Instant;

use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use careid_domain::access::Actor;
use careid_proto::{ErrorBody, ErrorDetail};
use careid_service::RequestContext;
use serde::de::DeserializeOwned;

use crate::App;
use crate::error::ApiError;

/// The request's id, set by `request_id_layer` before anything else runs.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn acceptable_request_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = (8..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| s.to_owned())
}

/// Gives every request careid's own id, returns it in the response header, and renders any
/// `ApiError` as the JSON error body carrying that id. The id goes into the tamper-evident
/// log, so no caller chooses it; a caller's sane `x-request-id` is put beside it in the
/// operator's log, for tracing a request through a proxy.
pub async fn request_id_layer(mut request: Request, next: Next) -> Response {
    let id = {
        use rand::RngCore;
        let mut bytes = [0u8; 8];
        rand::rng().fill_bytes(&mut bytes);
        format!("req-{}", hex::encode(bytes))
    };
    if let Some(theirs) = request.headers().get("x-request-id").and_then(acceptable_request_id) {
        tracing::debug!(request = %id, caller_request = %theirs, "the caller's request id");
    }
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    if let Some(mut detail) = response.extensions_mut().remove::<ErrorDetail>() {
        detail.request_id.clone_from(&id);
        let retry_after = response.headers().get(RETRY_AFTER).cloned();
        response = (response.status(), axum::Json(ErrorBody { error: detail })).into_response();
        if let Some(value) = retry_after {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
    } else if response.status() == StatusCode::NOT_FOUND && response.headers().get("content-type").is_none() {
        let mut error = ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint");
        error.detail.request_id.clone_from(&id);
        response = (StatusCode::NOT_FOUND, axum::Json(ErrorBody { error: *error.detail })).into_response();
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Counts requests and their latency by route, method and status, and refusals by rule.
pub async fn metrics_layer(State(app): State<App>, request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    // Route templates only: identifiers in the path stay out of the log.
    tracing::debug!(%route, %method, status = response.status().as_u16(), micros = elapsed.as_micros() as u64, "request");
    app.metrics.observe_request(route, method, response.status().as_u16(), elapsed);
    if let Some(rule) = response.extensions().get::<careid_proto::ErrorDetail>().and_then(|d| d.rule.as_deref()) {
        app.metrics.observe_refusal(rule);
    }
    response
}

pub(crate) fn request_context(parts: &Parts) -> RequestContext {
    let id = parts.extensions.get::<RequestId>().map_or_else(|| "unknown".to_owned(), |r| r.0.clone());
    let source = parts.extensions.get::<crate::limit::Source>().and_then(|s| s.0);
    RequestContext::new(id).from_source(source.map(|a| a.to_string()))
}

/// The request's context, for endpoints that need no session.
#[derive(Debug)]
pub struct Ctx(pub RequestContext);

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Ctx, ApiError> {
        Ok(Ctx(request_context(parts)))
    }
}

/// The token of an `Authorization: Bearer <token>` header. The scheme is matched without
/// regard to case, as RFC 7235 says of every authentication scheme.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// An authenticated caller: a live session acting in one position.
#[derive(Debug)]
pub struct Authed {
    pub ctx: RequestContext,
    pub actor: Actor,
}

impl FromRequestParts<App> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Authed, ApiError> {
        let token = bearer(&parts.headers)
            .ok_or_else(|| ApiError::unauthenticated("sign in first: send Authorization: Bearer <token>"))?;
        let actor = app.service.authenticate(token).await?;
        Ok(Authed { ctx: request_context(parts), actor })
    }
}

/// A JSON body; a malformed one is refused in the API's error format.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Body<T>, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(ApiError::malformed(rejection.body_text())),
        }
    }
}

/// Query parameters; malformed ones are refused in the API's error format.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Params<T>, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Params(value)),
            Err(rejection) => Err(ApiError::malformed(rejection.body_text())),
        }
    }
}

/// Path parameters; malformed ones are refused in the API's error format.
#[derive(Debug)]
pub struct PathParam<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<PathParam<T>, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(PathParam(value)),
            Err(rejection) => Err(ApiError::malformed(rejection.body_text())),
        }
    }
}
