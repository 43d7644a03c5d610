//! Rate limits on what an anonymous client can make careid do: per source address for every
//! endpoint that needs no session, and per target (a credential, a card, a challenge's
//! workstation, an application) where one is named. A refused request is answered 429 with
//! `Retry-After` before it reaches the service, so it costs no database work and no audit
//! record.
//!
//! Each limit is a GCRA (generic cell rate algorithm) bucket: `per_minute` requests a minute
//! on average, `burst` at once. A bucket is a single instant (when it will be empty), so a
//! million sources cost a few tens of megabytes at most, and idle buckets are dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::App;
use crate::error::ApiError;
use crate::tls::Peer;

/// How many buckets one limiter keeps before it must refuse new keys (after dropping the idle).
const MAX_KEYS: usize = 1_000_000;

/// The rate of one kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

impl Rate {
    pub const fn new(per_minute: u32, burst: u32) -> Rate {
        Rate { per_minute, burst }
    }

    /// The time one request uses up.
    fn interval(self) -> Duration {
        Duration::from_secs(60) / self.per_minute.max(1)
    }

    /// How far ahead of now a bucket may run: the burst.
    fn tolerance(self) -> Duration {
        self.interval() * self.burst.max(1).saturating_sub(1)
    }
}

/// What an anonymous request is, for its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Signing in: credential and card login, challenges, wrong-passcode reports.
    Login,
    /// Self-service unlock: codes by email and their use.
    Unlock,
    /// An application authenticating itself: token, introspection, revocation, access events.
    Application,
    /// A card's proof of presence for a session it holds.
    Heartbeat,
    /// Public reads: the log's checkpoints and hash tiles, proofs, the CA, discovery.
    Public,
}

impl Kind {
    pub fn code(self) -> &'static str {
        match self {
            Kind::Login => "login",
            Kind::Unlock => "unlock",
            Kind::Application => "application",
            Kind::Heartbeat => "heartbeat",
            Kind::Public => "public",
        }
    }

    /// The kind of an endpoint that needs no session, by its route; `None` for the rest,
    /// which authenticate a bearer token first and answer 401 without further work.
    pub fn of_route(method: &Method, route: &str) -> Option<Kind> {
        let post = method == Method::POST;
        Some(match route {
            "/api/v1/sessions" if post => Kind::Login,
            "/api/v1/login/challenge"
            | "/api/v1/login/card"
            | "/api/v1/login/wrong-passcode"
            | "/oidc/authorize/{id}/card" => Kind::Login,
            "/api/v1/cards/unlock-code"
            | "/api/v1/cards/{id}/self-service-unlock"
            | "/api/v1/cards/{id}/self-service-unlock/complete" => Kind::Unlock,
            "/oidc/token" | "/oidc/introspect" | "/oidc/revoke" | "/api/v1/access-events" => Kind::Application,
            "/api/v1/sessions/{id}/heartbeat" => Kind::Heartbeat,
            "/healthz"
            | "/readyz"
            | "/metrics"
            | "/api/openapi.json"
            | "/api/v1/job-roles"
            | "/api/v1/activities"
            | "/pki/ca"
            | "/pki/root"
            | "/pki/crl"
            | "/log/checkpoint"
            | "/log/key"
            | "/log/check"
            | "/log/tile/{*path}"
            | "/.well-known/openid-configuration"
            | "/oidc/jwks"
            | "/oidc/authorize"
            | "/oidc/userinfo" => Kind::Public,
            _ => return None,
        })
    }
}

/// The limits of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sign-in attempts from one address. A practice's workstations often share one address
    /// behind NAT: the morning's logins of a few hundred staff stay well inside it.
    pub login_per_source: Rate,
    pub unlock_per_source: Rate,
    pub application_per_source: Rate,
    pub heartbeat_per_source: Rate,
    pub public_per_source: Rate,
    /// Attempts on one credential, card, workstation's challenge or application, from anywhere.
    pub per_target: Rate,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            login_per_source: Rate::new(120, 60),
            unlock_per_source: Rate::new(10, 5),
            application_per_source: Rate::new(6_000, 1_000),
            heartbeat_per_source: Rate::new(12_000, 2_000),
            public_per_source: Rate::new(1_200, 300),
            per_target: Rate::new(10, 10),
        }
    }
}

impl Limits {
    /// No limit anyone reaches: for benchmarks that drive careid from one address.
    pub fn unlimited() -> Limits {
        let none = Rate::new(u32::MAX, u32::MAX);
        Limits {
            login_per_source: none,
            unlock_per_source: none,
            application_per_source: none,
            heartbeat_per_source: none,
            public_per_source: none,
            per_target: none,
        }
    }

    fn per_source(&self, kind: Kind) -> Rate {
        match kind {
            Kind::Login => self.login_per_source,
            Kind::Unlock => self.unlock_per_source,
            Kind::Application => self.application_per_source,
            Kind::Heartbeat => self.heartbeat_per_source,
            Kind::Public => self.public_per_source,
        }
    }
}

/// Keyed GCRA buckets.
#[derive(Debug, Default)]
pub struct Limiter {
    /// For each key, when its bucket is empty again (the theoretical arrival time).
    buckets: Mutex<HashMap<(Kind, String), Instant>>,
}

impl Limiter {
    /// Takes one request from `key`'s bucket, or says how long to wait.
    pub fn take(&self, kind: Kind, key: &str, rate: Rate, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_KEYS {
            buckets.retain(|_, empty_at| *empty_at > now);
            if buckets.len() >= MAX_KEYS {
                return Err(Duration::from_secs(1));
            }
        }
        let empty_at = buckets.entry((kind, key.to_owned())).or_insert(now);
        let start = (*empty_at).max(now);
        let ahead = start.saturating_duration_since(now);
        if let Some(wait) = ahead.checked_sub(rate.tolerance()).filter(|w| !w.is_zero()) {
            return Err(wait);
        }
        *empty_at = start + rate.interval();
        Ok(())
    }
}

/// A request refused by a limit: 429 with `Retry-After` in whole seconds.
pub fn too_many(kind: Kind, wait: Duration, what: &str) -> ApiError {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut error = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many {} requests {what}: try again in {seconds} s", kind.code()),
    );
    error.retry_after = Some(seconds);
    error
}

/// The address a request came from: the peer, or, behind the trusted proxy the
/// configuration names, the last address that proxy appended to `X-Forwarded-For`.
pub fn source(request: &Request, trusted_proxy: Option<IpAddr>) -> Option<IpAddr> {
    let peer = request.extensions().get::<ConnectInfo<Peer>>().map(|c| c.0.0.ip())?;
    if Some(peer) != trusted_proxy {
        return Some(peer);
    }
    let forwarded = request.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
    Some(forwarded.and_then(|v| v.rsplit(',').next()).and_then(|a| a.trim().parse().ok()).unwrap_or(peer))
}

/// Limits every endpoint that needs no session by the address it is called from, and puts
/// that address on the request for the audit records of what it is refused.
pub async fn per_source_layer(State(app): State<App>, mut request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let source = source(&request, app.trusted_proxy);
    request.extensions_mut().insert(Source(source));
    let kind = route.as_deref().and_then(|r| Kind::of_route(request.method(), r));
    if let (Some(kind), Some(address)) = (kind, source) {
        let rate = app.limits.per_source(kind);
        if let Err(wait) = app.limiter.take(kind, &address.to_string(), rate, Instant::now()) {
            return too_many(kind, wait, "from this address").into_response();
        }
    }
    next.run(request).await
}

/// A target's key in the limiter: a digest, so that no secret a caller sent (a credential)
/// is kept in memory beyond its request.
pub fn target_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(bytes)[..16])
}

/// Where a request came from, as `per_source_layer` found it.
#[derive(Debug, Clone, Copy)]
pub struct Source(pub Option<IpAddr>);

impl App {
    /// Takes one request on `target` (a credential's hash, a card, an application) for `kind`,
    /// from anywhere: many sources cannot share out the guessing of one secret.
    pub fn limit_target(&self, kind: Kind, target: &str) -> Result<(), ApiError> {
        self.limiter
            .take(kind, &format!("target:{target}"), self.limits.per_target, Instant::now())
            .map_err(|wait| too_many(kind, wait, "for this target"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let limiter = Limiter::default();
        let rate = Rate::new(60, 5);
        let start = Instant::now();
        for n in 0..5 {
            assert!(limiter.take(Kind::Login, "a", rate, start).is_ok(), "request {n} of the burst");
        }
        let wait = limiter.take(Kind::Login, "a", rate, start).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limiter.take(Kind::Login, "b", rate, start).is_ok(), "another key has its own bucket");
        assert!(limiter.take(Kind::Public, "a", rate, start).is_ok(), "another kind has its own bucket");
        // One request a second comes back.
        assert!(limiter.take(Kind::Login, "a", rate, start + Duration::from_secs(1)).is_ok());
        assert!(limiter.take(Kind::Login, "a", rate, start + Duration::from_secs(1)).is_err());
        // An idle minute refills the burst, and no more.
        let later = start + Duration::from_secs(120);
        for _ in 0..5 {
            assert!(limiter.take(Kind::Login, "a", rate, later).is_ok());
        }
        assert!(limiter.take(Kind::Login, "a", rate, later).is_err());
    }

    #[test]
    fn every_route_that_needs_no_session_has_a_kind() {
        assert_eq!(Kind::of_route(&Method::POST, "/api/v1/sessions"), Some(Kind::Login));
        assert_eq!(Kind::of_route(&Method::GET, "/api/v1/sessions"), None, "listing sessions needs one");
        assert_eq!(Kind::of_route(&Method::POST, "/oidc/token"), Some(Kind::Application));
        assert_eq!(Kind::of_route(&Method::GET, "/api/v1/people"), None);
    }
}
