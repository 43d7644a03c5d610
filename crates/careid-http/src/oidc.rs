//! The OpenID Connect provider over HTTP: discovery, JWKS, the authorize page that asks the
//! workstation agent for the card's approval, the token endpoint (authorization code with PKCE,
//! and RFC 8693 token exchange), userinfo, RFC 7009 revocation, RFC 7662 introspection, and the
//! RA Manager's client registrations. Tokens are signed here with ES256; what they say, and
//! whether they are alive, is the service's.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine;
use careid_audit::format_time;
use careid_domain::oidc::{Client, PendingLogout};
use careid_domain::secret::Secret;
use careid_pki::TokenSigner;
use careid_proto as wire;
use careid_service::{
    AuthorizationRequest, AuthorizeError, CardApproval, ClientCredentials, Identity, NewClient, OAuthError, TokenGrant,
};
use serde_json::{Value, json};

use crate::App;
use crate::cards::base64_field;
use crate::error::ApiError;
use crate::extract::{Authed, Body, Ctx, bearer};

/// The provider's signing key and the issuer it signs as.
#[derive(Debug)]
pub struct Oidc {
    pub signer: TokenSigner,
    /// The public URL of this careid (`iss`), without a trailing slash.
    pub issuer: String,
    /// The port of the workstation agent's local endpoint on 127.0.0.1.
    pub agent_port: u16,
}

/// The OpenID back-channel logout event.
const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

impl Oidc {
    /// A back-channel logout token for one application (OpenID Connect Back-Channel Logout 1.0).
    pub fn logout_token(&self, logout: &PendingLogout, now: time::OffsetDateTime, jti: &str) -> Result<String, String> {
        let claims = json!({
            "iss": self.issuer,
            "aud": logout.client.as_str(),
            "iat": now.unix_timestamp(),
            "exp": now.unix_timestamp() + 120,
            "jti": jti,
            "sub": logout.person.to_string(),
            "sid": logout.session,
            "events": { LOGOUT_EVENT: {} },
        });
        self.signer.sign_typed("logout+jwt", claims.to_string().as_bytes()).map_err(|e| e.to_string())
    }

    fn sign(&self, claims: &Value) -> Result<String, OAuthError> {
        self.signer.sign(claims.to_string().as_bytes()).map_err(|e| {
            tracing::error!(error = %e, "could not sign a token");
            OAuthError::InvalidRequest("the token could not be signed".into())
        })
    }

    /// The `jti` of an access token this provider signed (not whether it is alive).
    pub(crate) fn token_id(&self, token: &str) -> Option<String> {
        let payload = self.signer.verify(token.trim()).ok()?;
        let claims: Value = serde_json::from_slice(&payload).ok()?;
        (claims["iss"] == self.issuer.as_str()).then(|| claims["jti"].as_str().map(str::to_owned))?
    }
}

fn provider(app: &App) -> Result<&Oidc, ApiError> {
    app.oidc.as_deref().ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "oidc_unavailable", "this careid has no token signing key")
    })
}

/// `/.well-known/openid-configuration` (OpenID Connect Discovery 1.0).
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "openid connect",
    responses((status = 200, description = "OpenID Connect Discovery 1.0 metadata", content_type = "application/json"),
        (status = 503, body = wire::ErrorBody)))]
pub async fn discovery(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let oidc = provider(&app)?;
    let iss = &oidc.issuer;
    Ok(Json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/oidc/authorize"),
        "token_endpoint": format!("{iss}/oidc/token"),
        "userinfo_endpoint": format!("{iss}/oidc/userinfo"),
        "jwks_uri": format!("{iss}/oidc/jwks"),
        "revocation_endpoint": format!("{iss}/oidc/revoke"),
        "introspection_endpoint": format!("{iss}/oidc/introspect"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", TOKEN_EXCHANGE],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "userinfo_signing_alg_values_supported": [],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "profile", "nationalrbacaccess", "associatedorgs"],
        "claims_supported": ["sub", "uid", "name", "given_name", "family_name", "nhsid_nrbac_roles",
            "nhsid_user_orgs", "selected_roleid", "acr", "amr", "id_assurance_level",
            "authentication_assurance_level", "sid", "auth_time"],
        "acr_values_supported": ["AAL3_ANY"],
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
    })))
}

/// The provider's public signing key.
#[utoipa::path(get, path = "/oidc/jwks", tag = "openid connect",
    responses((status = 200, description = "the JSON Web Key Set (RFC 7517)", content_type = "application/json"),
        (status = 503, body = wire::ErrorBody)))]
pub async fn jwks(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let (kid, x, y) = provider(&app)?.signer.public_jwk();
    Ok(Json(
        json!({ "keys": [{ "kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "use": "sig", "alg": "ES256" }] }),
    ))
}

/// Escapes text for HTML.
fn html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn error_page(message: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>careid: sign-in refused</title></head>\
         <body><h1>careid could not start this sign-in</h1><p id=\"error\">{}</p>\
         <p>Tell the application's supplier; careid has recorded the attempt.</p></body></html>",
        html(message)
    );
    let mut response = (StatusCode::BAD_REQUEST, Html(body)).into_response();
    secure_page(response.headers_mut(), None, None);
    response
}

/// Page headers: nothing cached, not framed, scripts only our own (by nonce), and requests
/// only to the local agent.
fn secure_page(headers: &mut HeaderMap, nonce: Option<&str>, agent: Option<&str>) {
    let script = nonce.map(|n| format!(" script-src 'nonce-{n}'; style-src 'nonce-{n}';")).unwrap_or_default();
    let connect = agent.map(|a| format!(" connect-src {a};")).unwrap_or_default();
    let policy = format!("default-src 'none';{script}{connect} frame-ancestors 'none'; form-action 'none'");
    if let Ok(value) = HeaderValue::from_str(&policy) {
        headers.insert(CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
}

/// Appends `pairs` to a redirect URI's query.
fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let query = serde_urlencoded::to_string(pairs).unwrap_or_default();
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}{query}")
}

/// The authorization endpoint: checks the application and its request, then shows a page that
/// asks the workstation agent (on 127.0.0.1) to have the card approve this request. The
/// browser never sees the passcode or the key; it carries only the request's id.
#[utoipa::path(get, path = "/oidc/authorize", tag = "openid connect",
    params(
        ("response_type" = Option<String>, Query, description = "`code`"),
        ("client_id" = Option<String>, Query, description = "the application's client_id"),
        ("redirect_uri" = Option<String>, Query, description = "one of the application's registered redirect URIs"),
        ("scope" = Option<String>, Query, description = "`openid` and any of `profile`, `nationalrbacaccess`, `associatedorgs`"),
        ("state" = Option<String>, Query), ("nonce" = Option<String>, Query),
        ("code_challenge" = Option<String>, Query, description = "PKCE S256 challenge"),
        ("code_challenge_method" = Option<String>, Query, description = "`S256`"),
    ),
    responses((status = 200, description = "the sign-in page", content_type = "text/html"),
        (status = 302, description = "back to the application with an error"),
        (status = 400, description = "a request careid cannot send back to any application", content_type = "text/html")))]
pub async fn authorize(
    State(app): State<App>,
    Ctx(ctx): Ctx,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Ok(oidc) = provider(&app) else { return error_page("this careid has no token signing key") };
    let get = |k: &str| query.get(k).cloned();
    let request = AuthorizationRequest {
        client_id: get("client_id").unwrap_or_default(),
        redirect_uri: get("redirect_uri").unwrap_or_default(),
        response_type: get("response_type").unwrap_or_default(),
        scope: get("scope").unwrap_or_default(),
        state: get("state"),
        nonce: get("nonce"),
        code_challenge: get("code_challenge"),
        code_challenge_method: get("code_challenge_method"),
    };
    match app.service.begin_authorization(&ctx, &request).await {
        Ok((authorization, client)) => authorize_page(oidc, &authorization.id, &client, &authorization.scope),
        Err(AuthorizeError::NotRedirectable(message)) => error_page(&message),
        Err(AuthorizeError::Redirect { redirect_uri, state, error, description }) => {
            let mut pairs = vec![("error", error), ("error_description", description.as_str())];
            if let Some(state) = state.as_deref() {
                pairs.push(("state", state));
            }
            Redirect::to(&with_query(&redirect_uri, &pairs)).into_response()
        }
        Err(AuthorizeError::Store(e)) => {
            tracing::error!(error = %e, "store failed");
            error_page("careid's store is unavailable; try again shortly")
        }
    }
}

fn authorize_page(oidc: &Oidc, authorization: &str, client: &Client, scope: &str) -> Response {
    let mut nonce = [0u8; 16];
    rand::fill(&mut nonce);
    let nonce = hex::encode(nonce);
    let agent = format!("http://127.0.0.1:{}", oidc.agent_port);
    let body = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>careid: sign in to {name}</title>
<style nonce="{nonce}">body{{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem}}
.notice{{padding:1rem;border-left:4px solid #005eb8;background:#f0f4f5}}.error{{border-color:#d5281b!important}}</style></head>
<body><h1>Sign in to {name}</h1>
<p>{name} asks careid who you are ({scope}). Your card confirms it through the careid agent on this computer.</p>
<p id="status" class="notice" data-request="{authorization}" data-auto="yes">Asking your card…</p>
<p><button id="retry" hidden>Try again</button></p>
<script nonce="{nonce}">{script}</script></body></html>"#,
        name = html(client.name.as_str()),
        scope = html(scope),
        authorization = html(authorization),
        script = card_approval_script(&agent, "Signed in: returning to the application…"),
    );
    let mut response = Html(body).into_response();
    secure_page(response.headers_mut(), Some(&nonce), Some(&agent));
    response
}

/// The script of a sign-in page: it asks the workstation agent at `agent` to have the card
/// approve the request named by `#status`'s `data-request`, then goes where careid's answer
/// says; at once when `data-auto` is `yes`, else when `#retry` is pressed. The application's
/// sign-in page and the console's share it.
pub(crate) fn card_approval_script(agent: &str, signed_in: &str) -> String {
    format!(
        r#"
const status = document.getElementById("status");
const retry = document.getElementById("retry");
async function approve() {{
  retry.hidden = true;
  status.className = "notice";
  status.textContent = "Asking your card…";
  try {{
    const r = await fetch("{agent}/v1/authorize", {{
      method: "POST",
      headers: {{ "Content-Type": "application/json" }},
      body: JSON.stringify({{ authorization: status.dataset.request }}),
    }});
    const body = await r.json();
    if (r.ok && body.redirect) {{ status.textContent = "{signed_in}"; location.replace(body.redirect); return; }}
    status.textContent = (body.error && body.error.message) || "Your card did not approve this sign-in.";
  }} catch (e) {{
    status.textContent = "The careid agent is not running on this computer: start it and insert your card.";
  }}
  status.className = "notice error";
  retry.hidden = false;
}}
retry.addEventListener("click", approve);
if (status.dataset.auto === "yes") {{ approve(); }} else {{ retry.hidden = false; }}
"#
    )
}

/// The workstation agent sends the card's approval of an authorization request; the answer
/// is where the browser goes next (the application, with a one-time code). A `console-`
/// request is a sign-in to careid's own web console.
#[utoipa::path(post, path = "/oidc/authorize/{id}/card", tag = "oidc", params(("id" = String, Path, description = "the authorization request's identifier")), request_body = wire::CardApprovalRequest,
    responses((status = 200, body = wire::CardApproved), (status = 401, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody)))]
pub async fn authorize_card(
    State(app): State<App>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    Body(body): Body<wire::CardApprovalRequest>,
) -> Result<Json<wire::CardApproved>, ApiError> {
    let approval = CardApproval {
        authorization: id,
        session: body.session_id,
        time: body.time,
        signature: base64_field("signature", &body.signature)?,
    };
    if approval.authorization.starts_with(careid_service::CONSOLE_SIGN_IN_PREFIX) {
        // The console's own sign-in page asked: the browser that holds the secret is signed in.
        app.service.approve_console_sign_in(&ctx, &approval).await?;
        return Ok(Json(wire::CardApproved { redirect: "/console/".into() }));
    }
    let approved = app.service.approve_authorization(&ctx, &approval).await?;
    let mut pairs = vec![("code", approved.code.expose())];
    if let Some(state) = approved.state.as_deref() {
        pairs.push(("state", state));
    }
    Ok(Json(wire::CardApproved { redirect: with_query(&approved.redirect_uri, &pairs) }))
}

/// An OAuth error response (RFC 6749 section 5.2).
pub(crate) struct OAuthFailure(pub(crate) OAuthError);

/// The form `/oidc/revoke` and `/oidc/introspect` take (RFC 7009, RFC 7662), for the OpenAPI
/// document; the handlers read the form as a map.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes a form for the OpenAPI document")]
pub(crate) struct TokenForm {
    token: String,
    token_type_hint: Option<String>,
    /// With `client_secret`, instead of HTTP Basic.
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// The form `/oidc/token` takes: `authorization_code` (RFC 6749 with PKCE) or RFC 8693 token
/// exchange, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes a form for the OpenAPI document")]
pub(crate) struct TokenRequestForm {
    /// `authorization_code` or `urn:ietf:params:oauth:grant-type:token-exchange`.
    grant_type: String,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    subject_token: Option<String>,
    subject_token_type: Option<String>,
    audience: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// An OAuth request's form body (`application/x-www-form-urlencoded`); anything else is refused
/// as RFC 6749 says, with `invalid_request` in OAuth's JSON error format.
pub(crate) struct OAuthForm(pub(crate) HashMap<String, String>);

impl<S: Send + Sync> axum::extract::FromRequest<S> for OAuthForm {
    type Rejection = OAuthFailure;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<OAuthForm, OAuthFailure> {
        match axum::Form::<HashMap<String, String>>::from_request(request, state).await {
            Ok(axum::Form(form)) => Ok(OAuthForm(form)),
            Err(rejection) => Err(OAuthFailure(OAuthError::InvalidRequest(format!(
                "send the parameters as application/x-www-form-urlencoded ({})",
                rejection.body_text()
            )))),
        }
    }
}

impl From<OAuthError> for OAuthFailure {
    fn from(e: OAuthError) -> OAuthFailure {
        OAuthFailure(e)
    }
}

impl IntoResponse for OAuthFailure {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            OAuthError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
            OAuthError::Store(e) => {
                tracing::error!(error = %e, "store failed");
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::BAD_REQUEST,
        };
        let description = match &self.0 {
            OAuthError::Store(_) => "the store is unavailable; nothing was changed".to_owned(),
            other => other.to_string(),
        };
        let mut response =
            (status, Json(json!({ "error": self.0.code(), "error_description": description }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"careid\""));
        }
        response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// The client's credentials: HTTP Basic (RFC 6749 section 2.3.1, form-encoded parts) or the
/// form's `client_id` and `client_secret`.
pub(crate) fn client_credentials(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<ClientCredentials, OAuthError> {
    let basic = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic "));
    if let Some(basic) = basic {
        let bad = || OAuthError::InvalidClient("the Authorization header is not valid Basic credentials".into());
        let decoded = base64::engine::general_purpose::STANDARD.decode(basic.trim()).map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (id, secret) = text.split_once(':').ok_or_else(bad)?;
        let decode = |s: &str| -> Result<String, OAuthError> {
            serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
                .ok()
                .and_then(|v| v.into_iter().next().map(|(_, v)| v))
                .ok_or_else(bad)
        };
        return Ok(ClientCredentials { id: decode(id)?, secret: Some(Secret::new(decode(secret)?)) });
    }
    let id =
        form.get("client_id").cloned().ok_or_else(|| OAuthError::InvalidClient("authenticate the client".into()))?;
    Ok(ClientCredentials { id, secret: form.get("client_secret").cloned().map(Secret::new) })
}

fn field<'a>(form: &'a HashMap<String, String>, name: &str) -> Result<&'a str, OAuthError> {
    form.get(name).map(String::as_str).ok_or_else(|| OAuthError::InvalidRequest(format!("{name} is required")))
}

/// The claims of an access token.
fn access_claims(oidc: &Oidc, grant: &TokenGrant) -> Value {
    json!({
        "iss": oidc.issuer,
        "sub": grant.identity.person.to_string(),
        "aud": grant.client.as_str(),
        "client_id": grant.client.as_str(),
        "iat": grant.issued_at.unix_timestamp(),
        "exp": grant.expires_at.unix_timestamp(),
        "jti": grant.token_id,
        "sid": grant.session,
        "scope": grant.scope,
        "acr": acr(&grant.identity),
        "auth_time": grant.identity.auth_time.unix_timestamp(),
        "selected_roleid": grant.identity.selected.to_string(),
    })
}

fn acr(identity: &Identity) -> &'static str {
    match identity.auth {
        careid_domain::access::AuthMethod::Card => "AAL3_ANY",
        _ => "AAL1_USERPASS",
    }
}

/// The identity claims clinical applications expect from the national service.
fn identity_claims(identity: &Identity, scope: &str, claims: &mut serde_json::Map<String, Value>) {
    let card = identity.auth == careid_domain::access::AuthMethod::Card;
    let level = if card { "3" } else { "1" };
    let has = |s: &str| scope.split(' ').any(|w| w == s);
    claims.insert("sub".into(), json!(identity.person.to_string()));
    claims.insert("acr".into(), json!(acr(identity)));
    claims.insert("amr".into(), if card { json!(["sc", "pin"]) } else { json!(["pwd"]) });
    claims.insert("id_assurance_level".into(), json!(level));
    claims.insert("authentication_assurance_level".into(), json!(level));
    claims.insert("selected_roleid".into(), json!(identity.selected.to_string()));
    claims.insert("auth_time".into(), json!(identity.auth_time.unix_timestamp()));
    if has("profile") {
        claims.insert("uid".into(), json!(identity.person.to_string()));
        let name = [identity.title.as_deref(), Some(&identity.given_name), Some(&identity.family_name)]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        claims.insert("name".into(), json!(name));
        claims.insert("given_name".into(), json!(identity.given_name));
        claims.insert("family_name".into(), json!(identity.family_name));
    }
    if has("nationalrbacaccess") {
        let roles: Vec<Value> = identity
            .roles
            .iter()
            .map(|r| {
                json!({
                    "person_roleid": r.assignment.to_string(),
                    "org_code": r.org.to_string(),
                    "role_code": r.role.to_string(),
                    "role_name": r.role_name,
                    "activities": r.activity_names,
                    "activity_codes": r.activity_codes,
                })
            })
            .collect();
        claims.insert("nhsid_nrbac_roles".into(), json!(roles));
    }
    if has("associatedorgs") {
        let orgs: Vec<Value> = identity
            .orgs
            .iter()
            .map(|(code, name)| json!({ "org_code": code.to_string(), "org_name": name }))
            .collect();
        claims.insert("nhsid_user_orgs".into(), json!(orgs));
    }
}

fn token_response(oidc: &Oidc, grant: &TokenGrant) -> Result<Response, OAuthError> {
    let access_token = oidc.sign(&access_claims(oidc, grant))?;
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": (grant.expires_at - grant.issued_at).whole_seconds(),
        "scope": grant.scope,
    });
    match &grant.id_token {
        Some(nonce) => {
            let mut claims = serde_json::Map::new();
            claims.insert("iss".into(), json!(oidc.issuer));
            claims.insert("aud".into(), json!(grant.client.as_str()));
            claims.insert("azp".into(), json!(grant.client.as_str()));
            claims.insert("iat".into(), json!(grant.issued_at.unix_timestamp()));
            claims.insert("exp".into(), json!(grant.expires_at.unix_timestamp()));
            claims.insert("sid".into(), json!(grant.session));
            if let Some(nonce) = nonce {
                claims.insert("nonce".into(), json!(nonce));
            }
            identity_claims(&grant.identity, &grant.scope, &mut claims);
            body["id_token"] = json!(oidc.sign(&Value::Object(claims))?);
        }
        None => body["issued_token_type"] = json!(ACCESS_TOKEN_TYPE),
    }
    let mut response = Json(body).into_response();
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The token endpoint: `authorization_code` (with PKCE) and RFC 8693 token exchange.
#[utoipa::path(post, path = "/oidc/token", tag = "openid connect",
    request_body(content = TokenRequestForm, content_type = "application/x-www-form-urlencoded",
        description = "client authentication by HTTP Basic or in the form"),
    responses((status = 200, description = "tokens", content_type = "application/json"),
        (status = 400, description = "OAuth error", content_type = "application/json"),
        (status = 401, description = "invalid_client", content_type = "application/json"),
        (status = 429, body = wire::ErrorBody)))]
pub async fn token(State(app): State<App>, Ctx(ctx): Ctx, headers: HeaderMap, OAuthForm(form): OAuthForm) -> Response {
    let result = async {
        let oidc = app.oidc.as_deref().ok_or_else(|| OAuthError::InvalidRequest("no signing key".into()))?;
        let grant = match field(&form, "grant_type")? {
            "authorization_code" => {
                let credentials = client_credentials(&headers, &form)?;
                let code = field(&form, "code")?;
                let redirect_uri = field(&form, "redirect_uri")?;
                let verifier = field(&form, "code_verifier")?;
                app.service.exchange_code(&ctx, &credentials, code, redirect_uri, verifier).await?
            }
            TOKEN_EXCHANGE => {
                if field(&form, "subject_token_type")? != ACCESS_TOKEN_TYPE {
                    return Err(OAuthError::InvalidRequest(format!("subject_token_type must be {ACCESS_TOKEN_TYPE}")));
                }
                if form.get("requested_token_type").is_some_and(|t| t != ACCESS_TOKEN_TYPE) {
                    return Err(OAuthError::InvalidRequest(format!("careid issues only {ACCESS_TOKEN_TYPE}")));
                }
                let subject = Secret::new(field(&form, "subject_token")?.to_owned());
                app.service.exchange_session_token(&ctx, &subject, field(&form, "audience")?).await?
            }
            _ => return Err(OAuthError::UnsupportedGrantType),
        };
        token_response(oidc, &grant)
    }
    .await;
    result.unwrap_or_else(|e| OAuthFailure(e).into_response())
}

/// Userinfo by POST, as OpenID Connect Core 5.3.1 allows: the same answer as by GET.
#[utoipa::path(post, path = "/oidc/userinfo", tag = "openid connect", operation_id = "userinfo_post",
    responses((status = 200, description = "the holder's claims", content_type = "application/json"),
        (status = 401, description = "no active access token")),
    security(("bearer" = [])))]
pub async fn userinfo_post(state: State<App>, headers: HeaderMap) -> Response {
    userinfo(state, headers).await
}

/// Userinfo: the claims of the holder behind an active access token.
#[utoipa::path(get, path = "/oidc/userinfo", tag = "openid connect",
    responses((status = 200, description = "the holder's claims", content_type = "application/json"),
        (status = 401, description = "no active access token")),
    security(("bearer" = [])))]
pub async fn userinfo(State(app): State<App>, headers: HeaderMap) -> Response {
    let unauthorized = |why: &str| {
        let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{why}\"");
        let mut response =
            (StatusCode::UNAUTHORIZED, Json(json!({ "error": "invalid_token", "error_description": why })))
                .into_response();
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(WWW_AUTHENTICATE, value);
        }
        response
    };
    let Some(oidc) = app.oidc.as_deref() else { return unauthorized("no signing key") };
    let Some(token_id) = bearer(&headers).and_then(|t| oidc.token_id(t)) else {
        return unauthorized("send an access token careid signed: Authorization: Bearer <token>");
    };
    let state = match app.service.token_state(&token_id).await {
        Ok(Some(state)) if state.active => state,
        Ok(_) => return unauthorized("the access token is not active"),
        Err(e) => return OAuthFailure(e).into_response(),
    };
    match app.service.userinfo(&token_id).await {
        Ok(identity) => {
            let mut claims = serde_json::Map::new();
            identity_claims(&identity, &state.token.scope, &mut claims);
            let mut response = Json(Value::Object(claims)).into_response();
            response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(OAuthError::InvalidGrant(_)) => unauthorized("the access token is not active"),
        Err(e) => OAuthFailure(e).into_response(),
    }
}

/// RFC 7009 revocation.
#[utoipa::path(post, path = "/oidc/revoke", tag = "openid connect",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded",
        description = "client authentication by HTTP Basic or in the form"),
    responses((status = 200, description = "revoked, or not a token of this application"),
        (status = 400, description = "OAuth error", content_type = "application/json"),
        (status = 401, description = "invalid_client", content_type = "application/json"),
        (status = 429, body = wire::ErrorBody)))]
pub async fn revoke(State(app): State<App>, Ctx(ctx): Ctx, headers: HeaderMap, OAuthForm(form): OAuthForm) -> Response {
    let result = async {
        let oidc = app.oidc.as_deref().ok_or_else(|| OAuthError::InvalidRequest("no signing key".into()))?;
        let credentials = client_credentials(&headers, &form)?;
        let token_id = oidc.token_id(field(&form, "token")?);
        app.service.revoke_token(&ctx, &credentials, token_id.as_deref()).await?;
        Ok::<_, OAuthError>(StatusCode::OK.into_response())
    }
    .await;
    result.unwrap_or_else(|e| OAuthFailure(e).into_response())
}

/// RFC 7662 introspection, for confidential applications about their own tokens.
#[utoipa::path(post, path = "/oidc/introspect", tag = "openid connect",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded",
        description = "client authentication by HTTP Basic or in the form"),
    responses((status = 200, description = "RFC 7662 introspection response", content_type = "application/json"),
        (status = 400, description = "OAuth error", content_type = "application/json"),
        (status = 401, description = "invalid_client", content_type = "application/json"),
        (status = 429, body = wire::ErrorBody)))]
pub async fn introspect(State(app): State<App>, headers: HeaderMap, OAuthForm(form): OAuthForm) -> Response {
    let result = async {
        let oidc = app.oidc.as_deref().ok_or_else(|| OAuthError::InvalidRequest("no signing key".into()))?;
        let credentials = client_credentials(&headers, &form)?;
        let token_id = oidc.token_id(field(&form, "token")?);
        let state = app.service.introspect(&credentials, token_id.as_deref()).await?;
        let body = match state {
            Some(state) if state.active => {
                let t = &state.token;
                json!({
                    "active": true,
                    "scope": t.scope,
                    "client_id": t.client.as_str(),
                    "aud": t.client.as_str(),
                    "sub": t.person.to_string(),
                    "iss": oidc.issuer,
                    "exp": t.expires_at.unix_timestamp(),
                    "iat": t.issued_at.unix_timestamp(),
                    "jti": t.id,
                    "sid": t.session,
                    "token_type": "Bearer",
                })
            }
            _ => json!({ "active": false }),
        };
        let mut response = Json(body).into_response();
        response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok::<_, OAuthError>(response)
    }
    .await;
    result.unwrap_or_else(|e| OAuthFailure(e).into_response())
}

fn client_out(c: &Client) -> wire::ClientInfo {
    wire::ClientInfo {
        client_id: c.id.to_string(),
        name: c.name.to_string(),
        kind: c.kind.code().into(),
        redirect_uris: c.redirect_uris.iter().map(ToString::to_string).collect(),
        backchannel_logout_uri: c.backchannel_logout_uri.as_ref().map(ToString::to_string),
        org: c.org.to_string(),
        registered_by: c.registered_by.to_string(),
        registered_at: format_time(c.registered_at),
        disabled_at: c.disabled_at.map(format_time),
    }
}

/// An RA Manager registers a clinical application.
#[utoipa::path(post, path = "/api/v1/clients", tag = "oidc", request_body = wire::ClientRegistration,
    responses((status = 201, body = wire::ClientRegistered), (status = 403, body = wire::ErrorBody),
        (status = 409, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody)), security(("bearer" = [])))]
pub async fn clients_create(
    State(app): State<App>,
    auth: Authed,
    Body(body): Body<wire::ClientRegistration>,
) -> Result<(StatusCode, Json<wire::ClientRegistered>), ApiError> {
    let new = NewClient {
        id: body.client_id,
        name: body.name,
        kind: body.kind,
        redirect_uris: body.redirect_uris,
        backchannel_logout_uri: body.backchannel_logout_uri,
    };
    let (client, secret) = app.service.register_client(&auth.ctx, &auth.actor, new).await?;
    let registered =
        wire::ClientRegistered { client: client_out(&client), client_secret: secret.map(|s| s.expose().to_owned()) };
    Ok((StatusCode::CREATED, Json(registered)))
}

/// The registered applications.
#[utoipa::path(get, path = "/api/v1/clients", tag = "oidc",
    responses((status = 200, body = Vec<wire::ClientInfo>), (status = 403, body = wire::ErrorBody)), security(("bearer" = [])))]
pub async fn clients_list(State(app): State<App>, auth: Authed) -> Result<Json<Vec<wire::ClientInfo>>, ApiError> {
    Ok(Json(app.service.clients(&auth.actor).await?.iter().map(client_out).collect()))
}

/// Disables an application: it signs nobody in any more, and its tokens are no longer active.
#[utoipa::path(delete, path = "/api/v1/clients/{id}", tag = "oidc", params(("id" = String, Path, description = "the application's client_id")),
    responses((status = 204), (status = 403, body = wire::ErrorBody), (status = 404, body = wire::ErrorBody)), security(("bearer" = [])))]
pub async fn clients_disable(
    State(app): State<App>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.service.disable_client(&auth.ctx, &auth.actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
