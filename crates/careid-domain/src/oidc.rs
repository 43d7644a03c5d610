//! The OpenID Connect provider's records: registered clinical applications (clients), the
//! authorization requests a card approves, and the tokens issued for a session.
//!
//! Every token belongs to one session and dies with it: ending a session revokes its tokens
//! and queues a back-channel logout for each application that held one.

use time::{Duration, OffsetDateTime};

use crate::ids::{InvalidInput, OdsCode, PersonUuid};

/// How long an authorization request waits for the card before it must be started again.
pub const AUTHORIZATION_LIFETIME: Duration = Duration::minutes(5);
/// How long an authorization code can be exchanged once issued.
pub const CODE_LIFETIME: Duration = Duration::seconds(60);
/// How long an access token lasts (never beyond its session, which it dies with).
pub const ACCESS_TOKEN_LIFETIME: Duration = Duration::minutes(10);

/// A registered application's identifier: 3 to 64 of `a-z 0-9 -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(String);

impl ClientId {
    pub fn parse(s: &str) -> Result<ClientId, InvalidInput> {
        let fine = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if !(3..=64).contains(&s.len()) || !s.chars().all(fine) || s.starts_with('-') {
            return Err(InvalidInput::new(
                "client_id",
                "must be 3 to 64 characters of lower-case letters, digits and '-', not starting with '-'",
            ));
        }
        Ok(ClientId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether an application can keep a secret (a server) or not (a desktop or browser app).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Authenticates to the token endpoint with its secret.
    Confidential,
    /// Has no secret; PKCE alone binds the code to it.
    Public,
}

impl ClientKind {
    pub fn code(self) -> &'static str {
        match self {
            ClientKind::Confidential => "confidential",
            ClientKind::Public => "public",
        }
    }

    pub fn parse(s: &str) -> Result<ClientKind, InvalidInput> {
        match s {
            "confidential" => Ok(ClientKind::Confidential),
            "public" => Ok(ClientKind::Public),
            _ => Err(InvalidInput::new("kind", "must be confidential or public")),
        }
    }
}

/// A redirect or back-channel logout address: absolute `https://`, or `http://` on the loopback
/// interface only (RFC 8252 for native apps), with no fragment and no credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppUri(String);

impl AppUri {
    pub fn parse(field: &'static str, s: &str) -> Result<AppUri, InvalidInput> {
        let invalid = |why: &str| Err(InvalidInput::new(field, why.to_owned()));
        if s.len() > 2000 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return invalid("must be one URL of at most 2000 characters, without spaces");
        }
        if s.contains('#') {
            return invalid("must not have a fragment (#...)");
        }
        let rest = if let Some(rest) = s.strip_prefix("https://") {
            rest
        } else if let Some(rest) = s.strip_prefix("http://") {
            let host = rest.split(['/', '?']).next().unwrap_or_default();
            let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
            if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
                return invalid("must use https://, or http:// only on 127.0.0.1, [::1] or localhost");
            }
            rest
        } else {
            return invalid("must be an absolute https:// URL");
        };
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        if authority.is_empty() || authority.contains('@') {
            return invalid("must name a host, without user name or password");
        }
        Ok(AppUri(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AppUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A clinical application registered by an RA Manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: ClientId,
    pub name: crate::ids::DisplayText,
    pub kind: ClientKind,
    /// SHA-256 of the client secret (confidential clients only).
    pub secret_hash: Option<[u8; 32]>,
    /// Where codes may be sent: exact matches only.
    pub redirect_uris: Vec<AppUri>,
    /// Where back-channel logout tokens are posted when a session ends.
    pub backchannel_logout_uri: Option<AppUri>,
    /// The organisation that runs the application (its RA Manager's).
    pub org: OdsCode,
    pub registered_by: PersonUuid,
    pub registered_at: OffsetDateTime,
    pub disabled_at: Option<OffsetDateTime>,
}

impl Client {
    /// Only the exact registered string matches (no prefixes, no normalisation): an open
    /// redirector is the classic hole in an authorization server.
    pub fn allows_redirect(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r.as_str() == uri)
    }
}

/// An application's request to sign its user in, waiting for (or approved by) a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// Public identifier, shown to the browser and signed by the card.
    pub id: String,
    pub client: ClientId,
    pub redirect_uri: AppUri,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// BASE64URL(SHA-256(code_verifier)), RFC 7636 S256.
    pub code_challenge: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// The session whose card approved it, and when.
    pub session: Option<String>,
    pub approved_at: Option<OffsetDateTime>,
    /// SHA-256 of the code issued on approval.
    pub code_hash: Option<[u8; 32]>,
    pub code_used_at: Option<OffsetDateTime>,
}

/// A token careid issued: an access token for one application, bound to one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The JWT's `jti`.
    pub id: String,
    pub client: ClientId,
    pub session: String,
    pub person: PersonUuid,
    /// The authorization whose code it was issued for (none for a token exchange).
    pub authorization: Option<String>,
    pub scope: String,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

/// A back-channel logout waiting to be delivered to an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLogout {
    pub id: i64,
    pub client: ClientId,
    pub uri: AppUri,
    pub session: String,
    pub person: PersonUuid,
    pub attempts: u32,
}

/// What the workstation agent's card signs to approve an authorization request for the
/// session it keeps alive: the browser only carries the request's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeMessage<'a> {
    pub authorization: &'a str,
    pub session: &'a str,
    /// Seconds since the Unix epoch, by the workstation's clock.
    pub time: i64,
}

impl AuthorizeMessage<'_> {
    pub fn to_bytes(&self) -> Vec<u8> {
        format!(
            "careid authorize v1\nauthorization {}\nsession {}\ntime {}\n",
            self.authorization, self.session, self.time
        )
        .into_bytes()
    }
}

/// The scope a request may ask for: `openid` is required, and only the scopes careid serves.
pub fn parse_scope(scope: &str) -> Result<String, InvalidInput> {
    const KNOWN: [&str; 4] = ["openid", "profile", "nationalrbacaccess", "associatedorgs"];
    let words: Vec<&str> = scope.split(' ').filter(|w| !w.is_empty()).collect();
    if !words.contains(&"openid") {
        return Err(InvalidInput::new("scope", "must include openid"));
    }
    if let Some(unknown) = words.iter().find(|w| !KNOWN.contains(w)) {
        return Err(InvalidInput::new(
            "scope",
            format!("unknown scope {unknown:?}: careid serves {}", KNOWN.join(", ")),
        ));
    }
    let mut kept: Vec<&str> = Vec::new();
    for w in words {
        if !kept.contains(&w) {
            kept.push(w);
        }
    }
    Ok(kept.join(" "))
}

/// A PKCE code challenge: 43 characters of BASE64URL (a SHA-256), RFC 7636 section 4.2.
pub fn parse_code_challenge(challenge: &str, method: &str) -> Result<String, InvalidInput> {
    if method != "S256" {
        return Err(InvalidInput::new("code_challenge_method", "must be S256 (plain is not accepted)"));
    }
    let fine = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if challenge.len() != 43 || !challenge.chars().all(fine) {
        return Err(InvalidInput::new("code_challenge", "must be BASE64URL(SHA-256(code_verifier)), 43 characters"));
    }
    Ok(challenge.to_owned())
}

/// A PKCE code verifier: 43 to 128 unreserved characters (RFC 7636 section 4.1).
pub fn check_code_verifier(verifier: &str) -> Result<(), InvalidInput> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~');
    if !(43..=128).contains(&verifier.len()) || !verifier.chars().all(fine) {
        return Err(InvalidInput::new("code_verifier", "must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_short_lower_case_names() {
        assert!(ClientId::parse("gp-record-viewer").is_ok());
        for bad in ["ab", "GP", "-x-y", "a b c", "app/1", &"a".repeat(65)] {
            assert_eq!(ClientId::parse(bad).unwrap_err().field, "client_id", "{bad}");
        }
    }

    #[test]
    fn redirects_are_https_or_loopback_http_without_fragments() {
        for good in ["https://app.example.nhs.uk/callback", "http://127.0.0.1:8080/cb", "http://localhost/cb?x=1"] {
            assert!(AppUri::parse("redirect_uri", good).is_ok(), "{good}");
        }
        for bad in [
            "http://app.example/cb",
            "https://app.example/cb#frag",
            "https://user:pw@app.example/cb",
            "https:///cb",
            "ftp://x/y",
            "https://a b",
            "http://127.0.0.1.evil.example/cb",
        ] {
            assert!(AppUri::parse("redirect_uri", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_exact_registered_redirect_matches() {
        let client = Client {
            id: ClientId::parse("app").unwrap(),
            name: crate::ids::DisplayText::sanitised("App"),
            kind: ClientKind::Public,
            secret_hash: None,
            redirect_uris: vec![AppUri::parse("redirect_uri", "https://app.example/cb").unwrap()],
            backchannel_logout_uri: None,
            org: OdsCode::parse("RX1").unwrap(),
            registered_by: PersonUuid::from_serial(PersonUuid::FIRST_SERIAL).unwrap(),
            registered_at: OffsetDateTime::UNIX_EPOCH,
            disabled_at: None,
        };
        assert!(client.allows_redirect("https://app.example/cb"));
        for near in
            ["https://app.example/cb/", "https://app.example/cb?x=1", "https://APP.example/cb", "https://app.example/c"]
        {
            assert!(!client.allows_redirect(near), "{near}");
        }
    }

    #[test]
    fn scope_needs_openid_and_known_words() {
        assert_eq!(parse_scope("openid profile openid").unwrap(), "openid profile");
        assert!(parse_scope("profile").is_err());
        assert!(parse_scope("openid admin").is_err());
    }

    #[test]
    fn pkce_is_s256_only() {
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(parse_code_challenge(challenge, "S256").is_ok());
        assert!(parse_code_challenge(challenge, "plain").is_err());
        assert!(parse_code_challenge("short", "S256").is_err());
        assert!(check_code_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").is_ok());
        assert!(check_code_verifier("too-short").is_err());
        assert!(check_code_verifier(&format!("{}!", "a".repeat(50))).is_err());
    }

    #[test]
    fn the_authorize_message_names_request_session_and_time() {
        let base = AuthorizeMessage { authorization: "a1", session: "s1", time: 5 };
        assert_eq!(base.to_bytes(), b"careid authorize v1\nauthorization a1\nsession s1\ntime 5\n");
        assert_ne!(AuthorizeMessage { authorization: "a2", ..base.clone() }.to_bytes(), base.to_bytes());
        assert_ne!(AuthorizeMessage { session: "s2", ..base.clone() }.to_bytes(), base.to_bytes());
        assert_ne!(AuthorizeMessage { time: 6, ..base.clone() }.to_bytes(), base.to_bytes());
    }
}
