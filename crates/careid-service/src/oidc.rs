//! The OpenID Connect provider's use cases: registering clinical applications, authorization
//! requests approved by the card of a live session, the code exchange with PKCE, token
//! exchange for the workstation agent, introspection, revocation, and the back-channel logouts
//! owed when a session ends.
//!
//! Tokens are records first: every access token has a row keyed by its `jti`, bound to one
//! session. A token is active only while its row is unrevoked, unexpired, and its session is
//! alive by the same liveness rule `authenticate` applies, so a card leaving the reader kills
//! every token of its session at once, whether or not the sweep has come by.

use careid_domain::access::{Actor, AuthMethod, RaAction, Refusal, Rule};
use careid_domain::audit::{Action, AuditActor, AuditEvent};
use careid_domain::ids::{AssignmentId, InvalidInput, OdsCode, PersonUuid, RoleTriple};
use careid_domain::login::check_signed_time;
use careid_domain::model::{ProfileStatus, parse_organisation_name};
use careid_domain::oidc::{
    ACCESS_TOKEN_LIFETIME, AUTHORIZATION_LIFETIME, AppUri, Authorization, AuthorizeMessage, CODE_LIFETIME, Client,
    ClientId, ClientKind, IssuedToken, PendingLogout, check_code_verifier, parse_code_challenge, parse_scope,
};
use careid_domain::ports::{LogoutSender, Session, StoreError, Transaction};
use careid_domain::secret::Secret;
use time::{Duration, OffsetDateTime};

use crate::audit_orgs::AppendAudit;
use crate::error::{RaError, not_found};
use crate::outbox::retry_delay;
use crate::{Delivery, RequestContext, Service, secret_hash};

/// An RA Manager's registration of a clinical application.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
}

/// What an application's authorization request asked (the query of `/oidc/authorize`).
#[derive(Debug, Clone, Default)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub response_type: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

/// Why an authorization request was not started.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    /// The client or its redirect address cannot be trusted: the error is shown on careid's
    /// own page and the browser is not sent anywhere (RFC 6749 section 4.1.2.1).
    #[error("{0}")]
    NotRedirectable(String),
    /// The application's request is wrong: the browser goes back to it with `error`.
    #[error("{error}: {description}")]
    Redirect { redirect_uri: String, state: Option<String>, error: &'static str, description: String },
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// The card's approval of an authorization request, sent by the workstation agent.
#[derive(Debug, Clone)]
pub struct CardApproval {
    pub authorization: String,
    pub session: String,
    pub time: i64,
    /// The card's signature over the `AuthorizeMessage`.
    pub signature: Vec<u8>,
}

/// Where the browser goes once the card approved: the code and the application's state.
#[derive(Debug)]
pub struct ApprovedCode {
    pub redirect_uri: String,
    pub code: Secret,
    pub state: Option<String>,
}

/// How an application authenticates at the token, revocation and introspection endpoints.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub id: String,
    pub secret: Option<Secret>,
}

/// An OAuth 2.0 error (RFC 6749 section 5.2), audited where a rule refused.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidClient(String),
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{0}")]
    InvalidTarget(String),
    #[error("the grant type is not supported")]
    UnsupportedGrantType,
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl OAuthError {
    /// The RFC 6749 / RFC 8693 error code.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient(_) => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::InvalidTarget(_) => "invalid_target",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::Store(_) => "server_error",
        }
    }
}

impl From<InvalidInput> for OAuthError {
    fn from(e: InvalidInput) -> OAuthError {
        OAuthError::InvalidRequest(e.to_string())
    }
}

impl From<RaError> for OAuthError {
    fn from(e: RaError) -> OAuthError {
        match e {
            RaError::Store(store) => OAuthError::Store(store),
            RaError::Invalid(invalid) => invalid.into(),
            other => OAuthError::InvalidGrant(other.to_string()),
        }
    }
}

/// One position the holder may act in, as the national RBAC claims name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleClaim {
    /// The assignment: `person_roleid` in the claims.
    pub assignment: AssignmentId,
    pub org: OdsCode,
    pub role: RoleTriple,
    pub role_name: String,
    pub activity_codes: Vec<String>,
    pub activity_names: Vec<String>,
}

/// Who a token speaks for: the claims of ID tokens and userinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub person: PersonUuid,
    pub given_name: String,
    pub family_name: String,
    pub title: Option<String>,
    /// The session's one selected position.
    pub selected: AssignmentId,
    pub roles: Vec<RoleClaim>,
    /// Organisations of the holder's current positions, with their names.
    pub orgs: Vec<(OdsCode, String)>,
    pub auth: AuthMethod,
    pub auth_time: OffsetDateTime,
}

/// Tokens granted to an application, before they are signed.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    /// The access token's `jti`.
    pub token_id: String,
    pub client: ClientId,
    /// The session's public id (`sid`).
    pub session: String,
    pub scope: String,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// For an ID token (code flow only): the nonce the application sent.
    pub id_token: Option<Option<String>>,
    pub identity: Identity,
}

/// What introspection says of a token (RFC 7662).
#[derive(Debug, Clone)]
pub struct TokenState {
    pub token: IssuedToken,
    /// Unrevoked, unexpired, and its session alive.
    pub active: bool,
}

fn words_ok(field: &'static str, value: &str, max: usize) -> Result<(), InvalidInput> {
    if value.len() > max || value.chars().any(char::is_control) {
        return Err(InvalidInput::new(field, format!("must be at most {max} printable characters")));
    }
    Ok(())
}

impl Service {
    /// An RA Manager registers a clinical application. A confidential application's secret is
    /// returned once and stored only as its hash.
    pub async fn register_client(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        new: NewClient,
    ) -> Result<(Client, Option<Secret>), RaError> {
        let now = self.clock.now();
        let id = ClientId::parse(&new.id)?;
        let name = parse_organisation_name(&new.name)
            .map_err(|_| InvalidInput::new("name", "must be 1 to 200 printable characters naming the application"))?;
        let kind = ClientKind::parse(&new.kind)?;
        if new.redirect_uris.is_empty() {
            return Err(InvalidInput::new("redirect_uris", "give at least one redirect URI").into());
        }
        let redirect_uris =
            new.redirect_uris.iter().map(|u| AppUri::parse("redirect_uris", u)).collect::<Result<Vec<_>, _>>()?;
        let backchannel_logout_uri =
            new.backchannel_logout_uri.as_deref().map(|u| AppUri::parse("backchannel_logout_uri", u)).transpose()?;
        let mut tx = self.begin_write_as(actor).await?;
        let mut event = self.event(ctx, actor.into(), Action::ClientRegister, "client", &id);
        event.orgs = vec![actor.org.clone()];
        if let Err(refusal) = actor.require(RaAction::ManageClients) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let secret =
            (kind == ClientKind::Confidential).then(|| Secret::new(format!("careid-client-{}", self.random_hex(32))));
        let client = Client {
            id: id.clone(),
            name,
            kind,
            secret_hash: secret.as_ref().map(|s| secret_hash(s.expose())),
            redirect_uris,
            backchannel_logout_uri,
            org: actor.org.clone(),
            registered_by: actor.person.clone(),
            registered_at: now,
            disabled_at: None,
        };
        match tx.insert_client(&client).await {
            Ok(()) => {}
            Err(StoreError::Duplicate(_)) => {
                return Err(RaError::Duplicate {
                    rule: Rule::AlreadyExists,
                    existing: id.to_string(),
                    message: format!("an application is already registered as {id}"),
                });
            }
            Err(e) => return Err(e.into()),
        }
        event.detail.push(("kind", kind.code().into()));
        event.detail.push(("redirect_uris", new.redirect_uris.join(" ")));
        tx.record(&event).await?;
        tx.commit().await?;
        Ok((client, secret))
    }

    /// The registered applications (RA Managers).
    pub async fn clients(&self, actor: &Actor) -> Result<Vec<Client>, RaError> {
        actor.require(RaAction::ManageClients)?;
        let mut tx = self.begin_read_as(actor).await?;
        Ok(tx.clients().await?)
    }

    /// An RA Manager disables an application: it can no longer sign anyone in, and its tokens
    /// stop being accepted.
    pub async fn disable_client(&self, ctx: &RequestContext, actor: &Actor, id: &str) -> Result<(), RaError> {
        let id = ClientId::parse(id)?;
        let mut tx = self.begin_write_as(actor).await?;
        tx.client(&id).await?.ok_or_else(|| not_found("client", &id))?;
        let event = self.event(ctx, actor.into(), Action::ClientDisable, "client", &id);
        if let Err(refusal) = actor.require(RaAction::ManageClients) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        if !tx.disable_client(&id, self.clock.now()).await? {
            return Err(self.refuse(tx, event, Refusal::new(Rule::ClientInvalid, "already disabled")).await);
        }
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Starts an authorization request: checks the application and its redirect first (so
    /// that no error is ever sent to an address careid does not know), then the request.
    pub async fn begin_authorization(
        &self,
        ctx: &RequestContext,
        request: &AuthorizationRequest,
    ) -> Result<(Authorization, Client), AuthorizeError> {
        let now = self.clock.now();
        let mut tx = self.store.begin_write().await?;
        let mut event = self.event(ctx, AuditActor::system(), Action::OidcAuthorize, "client", &request.client_id);
        let client = match ClientId::parse(&request.client_id) {
            Ok(id) => tx.client(&id).await?.filter(|c| c.disabled_at.is_none()),
            Err(_) => None,
        };
        let Some(client) = client else {
            let refusal = Refusal::new(Rule::ClientInvalid, "no application is registered under this client_id");
            return Err(self.refuse_oauth(tx, event, refusal, AuthorizeError::NotRedirectable).await);
        };
        if !client.allows_redirect(&request.redirect_uri) {
            event.detail.push(("redirect_uri", request.redirect_uri.chars().take(200).collect()));
            let refusal =
                Refusal::new(Rule::GrantInvalid, "the redirect_uri is not one registered for this application");
            return Err(self.refuse_oauth(tx, event, refusal, AuthorizeError::NotRedirectable).await);
        }
        let back = |error: &'static str, description: String| AuthorizeError::Redirect {
            redirect_uri: request.redirect_uri.clone(),
            state: request.state.clone(),
            error,
            description,
        };
        if request.response_type != "code" {
            return Err(back("unsupported_response_type", "careid serves response_type=code only".into()));
        }
        let checked = (|| {
            let scope = parse_scope(&request.scope)?;
            let method = request.code_challenge_method.as_deref().unwrap_or("plain");
            let challenge = request
                .code_challenge
                .as_deref()
                .ok_or_else(|| InvalidInput::new("code_challenge", "PKCE is required (code_challenge, S256)"))?;
            let challenge = parse_code_challenge(challenge, method)?;
            for (field, value) in [("state", &request.state), ("nonce", &request.nonce)] {
                if let Some(value) = value {
                    words_ok(field, value, 500)?;
                }
            }
            Ok::<_, InvalidInput>((scope, challenge))
        })();
        let (scope, code_challenge) = checked.map_err(|e| back("invalid_request", e.to_string()))?;
        let authorization = Authorization {
            id: self.random_hex(16),
            client: client.id.clone(),
            redirect_uri: AppUri::parse("redirect_uri", &request.redirect_uri)
                .map_err(|e| AuthorizeError::NotRedirectable(e.to_string()))?,
            scope,
            state: request.state.clone(),
            nonce: request.nonce.clone(),
            code_challenge,
            created_at: now,
            expires_at: now + AUTHORIZATION_LIFETIME,
            session: None,
            approved_at: None,
            code_hash: None,
            code_used_at: None,
        };
        tx.insert_authorization(&authorization).await?;
        event.subject_kind = "authorization";
        event.subject_id.clone_from(&authorization.id);
        event.detail.push(("client", client.id.to_string()));
        event.detail.push(("scope", authorization.scope.clone()));
        tx.record(&event).await?;
        tx.commit().await?;
        Ok((authorization, client))
    }

    /// The card of a live session approves an authorization request: the workstation agent
    /// signs the request's id with the session's card, and careid issues a one-time code.
    pub async fn approve_authorization(
        &self,
        ctx: &RequestContext,
        approval: &CardApproval,
    ) -> Result<ApprovedCode, RaError> {
        let now = self.clock.now();
        let mut tx = self.store.begin_write().await?;
        let authorization = tx
            .authorization(&approval.authorization)
            .await?
            .ok_or_else(|| not_found("authorization", &approval.authorization))?;
        let session =
            tx.session_by_id(&approval.session).await?.ok_or_else(|| not_found("session", &approval.session))?;
        let mut event = self.event(ctx, AuditActor::system(), Action::OidcApprove, "authorization", &authorization.id);
        event.detail.push(("client", authorization.client.to_string()));
        let by_card = self.card_approved(&mut tx, approval, &session, &mut event, now).await?;
        let checked = if authorization.session.is_some() {
            Err(Refusal::new(Rule::GrantInvalid, "this sign-in was already approved: start again from the application"))
        } else if authorization.expires_at <= now {
            Err(Refusal::new(Rule::GrantInvalid, "this sign-in request expired: start again from the application"))
        } else {
            by_card
        };
        if let Err(refusal) = checked {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let code = Secret::new(format!("careid-code-{}", self.random_hex(32)));
        if !tx.approve_authorization(&authorization.id, &session.id, &secret_hash(code.expose()), now).await? {
            let refusal = Refusal::new(Rule::GrantInvalid, "this sign-in was already approved");
            return Err(self.refuse(tx, event, refusal).await);
        }
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(ApprovedCode { redirect_uri: authorization.redirect_uri.to_string(), code, state: authorization.state })
    }

    /// Whether the card of the live session `session` signed `approval` just now: the
    /// workstation agent's answer to a sign-in page, for an application or for the console.
    /// Names the holder, their session and workstation in `event`.
    pub(crate) async fn card_approved(
        &self,
        tx: &mut Box<dyn Transaction>,
        approval: &CardApproval,
        session: &Session,
        event: &mut AuditEvent,
        now: OffsetDateTime,
    ) -> Result<Result<(), Refusal>, RaError> {
        event.actor.person = Some(session.person.clone());
        event.actor.session = Some(session.id.clone());
        event.actor.auth = session.auth.code();
        event.subject_person = Some(session.person.clone());
        let message =
            AuthorizeMessage { authorization: &approval.authorization, session: &session.id, time: approval.time };
        let signed_by_card = match &session.card {
            Some(presence) => {
                event.workstation = Some(presence.workstation.clone());
                let card = self.load_card(tx, presence.card).await?;
                card.public_key
                    .as_deref()
                    .is_some_and(|k| careid_pki::verify_card_signature(k, &message.to_bytes(), &approval.signature))
            }
            None => false,
        };
        Ok(if session.ended_at.is_some() || self.session_lapsed(session, now) {
            Err(Refusal::new(Rule::SessionEnded, "your card session has ended: insert your card and log in again"))
        } else if let Err(why) = check_signed_time(approval.time, now) {
            Err(Refusal::new(Rule::ChallengeInvalid, why))
        } else if !signed_by_card {
            Err(Refusal::new(Rule::SignatureInvalid, "the approval is not signed by the session's card"))
        } else {
            Ok(())
        })
    }

    /// Audits a refusal and turns it into the protocol's error; a store failure wins.
    async fn refuse_oauth<E: From<StoreError>>(
        &self,
        tx: Box<dyn Transaction>,
        event: AuditEvent,
        refusal: Refusal,
        error: fn(String) -> E,
    ) -> E {
        let message = refusal.message.clone();
        match self.refuse(tx, event, refusal).await {
            RaError::Store(store) => store.into(),
            _ => error(message),
        }
    }

    /// Whether a live session's time or its card's presence has run out.
    fn session_lapsed(&self, session: &Session, now: OffsetDateTime) -> bool {
        let last_proof = session.card.as_ref().map(|c| c.last_proof_at);
        self.liveness().ended(now, last_proof, session.last_seen_at, session.expires_at).is_some()
    }

    /// Whether these are a confidential application's good credentials: what an endpoint asks
    /// before it reads a request's body, so that an unknown caller makes careid parse nothing.
    pub async fn check_application(&self, credentials: &ClientCredentials) -> Result<(), OAuthError> {
        let mut tx = self.store.begin_read().await?;
        self.authenticate_client(&mut tx, credentials, true).await.map(drop)
    }

    /// Authenticates an application: a confidential one by its secret, a public one by its id.
    pub(crate) async fn authenticate_client(
        &self,
        tx: &mut Box<dyn Transaction>,
        credentials: &ClientCredentials,
        need_secret: bool,
    ) -> Result<Client, OAuthError> {
        let refused =
            || OAuthError::InvalidClient("the application is unknown, disabled, or its secret is wrong".into());
        let id = ClientId::parse(&credentials.id).map_err(|_| refused())?;
        let client = tx.client(&id).await?.filter(|c| c.disabled_at.is_none()).ok_or_else(refused)?;
        match (client.kind, &credentials.secret) {
            (ClientKind::Confidential, Some(secret))
                if client.secret_hash.is_some_and(|h| constant_time_eq(&h, &secret_hash(secret.expose()))) =>
            {
                Ok(client)
            }
            (ClientKind::Public, None) if !need_secret => Ok(client),
            _ => Err(refused()),
        }
    }

    /// Exchanges an authorization code (with its PKCE verifier) for tokens. A code presented
    /// twice revokes every token issued with it (RFC 6749 section 4.1.2).
    pub async fn exchange_code(
        &self,
        ctx: &RequestContext,
        credentials: &ClientCredentials,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> Result<TokenGrant, OAuthError> {
        let now = self.clock.now();
        let mut tx = self.store.begin_write().await?;
        let mut event = self.event(ctx, AuditActor::system(), Action::OidcToken, "client", &credentials.id);
        let client = match self.authenticate_client(&mut tx, credentials, false).await {
            Ok(client) => client,
            Err(error) => {
                let refusal = Refusal::new(Rule::ClientInvalid, error.to_string());
                return Err(self.refuse_oauth(tx, event, refusal, OAuthError::InvalidClient).await);
            }
        };
        let authorization = tx.authorization_by_code(&secret_hash(code)).await?;
        let grant_refused = |message: &str| Refusal::new(Rule::GrantInvalid, message.to_owned());
        let Some(authorization) = authorization else {
            let refusal = grant_refused("the code is unknown");
            return Err(self.refuse_oauth(tx, event, refusal, OAuthError::InvalidGrant).await);
        };
        event.subject_kind = "authorization";
        event.subject_id.clone_from(&authorization.id);
        event.detail.push(("client", client.id.to_string()));
        if authorization.code_used_at.is_some() {
            // A stolen code replayed, or a confused client: either way, nothing issued with it stands.
            let revoked = tx.revoke_tokens_of_authorization(&authorization.id, now).await?;
            event.detail.push(("tokens_revoked", revoked.to_string()));
            let refusal =
                Refusal::new(Rule::CodeReused, "the code was already used; the tokens issued with it are revoked");
            return Err(self.refuse_oauth(tx, event, refusal, OAuthError::InvalidGrant).await);
        }
        let approved_at = authorization.approved_at.unwrap_or(authorization.created_at);
        let checked = if authorization.client != client.id {
            Err(grant_refused("the code was issued to another application"))
        } else if approved_at + CODE_LIFETIME <= now {
            Err(grant_refused("the code expired"))
        } else if authorization.redirect_uri.as_str() != redirect_uri {
            Err(grant_refused("redirect_uri differs from the authorization request's"))
        } else if check_code_verifier(code_verifier).is_err()
            || careid_pki::pkce_s256(code_verifier) != authorization.code_challenge
        {
            Err(grant_refused("the PKCE code_verifier does not match the code_challenge"))
        } else {
            Ok(())
        };
        if let Err(refusal) = checked {
            return Err(self.refuse_oauth(tx, event, refusal, OAuthError::InvalidGrant).await);
        }
        let session_id = authorization.session.clone().unwrap_or_default();
        let session = tx.session_by_id(&session_id).await?;
        let session = match session {
            Some(s) if s.ended_at.is_none() && !self.session_lapsed(&s, now) => s,
            _ => {
                let refusal = Refusal::new(Rule::SessionEnded, "the card session that approved this code has ended");
                return Err(self.refuse_oauth(tx, event, refusal, OAuthError::InvalidGrant).await);
            }
        };
        if !tx.use_authorization_code(&authorization.id, now).await? {
            let refusal = Refusal::new(Rule::CodeReused, "the code was already used");
            return Err(self.refuse_oauth(tx, event, refusal, OAuthError::InvalidGrant).await);
        }
        let identity = self.identity(&mut tx, &session, now).await?;
        let token = self.new_token(&client, &session, Some(&authorization.id), &authorization.scope, now);
        tx.insert_token(&token).await?;
        event.actor.person = Some(session.person.clone());
        event.actor.session = Some(session.id.clone());
        event.actor.auth = session.auth.code();
        event.subject_person = Some(session.person.clone());
        event.detail.push(("token", token.id.clone()));
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(TokenGrant {
            token_id: token.id,
            client: client.id,
            session: session.id,
            scope: authorization.scope,
            issued_at: now,
            expires_at: token.expires_at,
            id_token: Some(authorization.nonce),
            identity,
        })
    }

    fn new_token(
        &self,
        client: &Client,
        session: &Session,
        authorization: Option<&str>,
        scope: &str,
        now: OffsetDateTime,
    ) -> IssuedToken {
        IssuedToken {
            id: self.random_hex(16),
            client: client.id.clone(),
            session: session.id.clone(),
            person: session.person.clone(),
            authorization: authorization.map(str::to_owned),
            scope: scope.to_owned(),
            issued_at: now,
            expires_at: (now + ACCESS_TOKEN_LIFETIME).min(session.expires_at),
            revoked_at: None,
        }
    }

    /// RFC 8693: the workstation agent exchanges its card session's token for an access token
    /// to one registered application (`audience`). Only card sessions are exchanged.
    pub async fn exchange_session_token(
        &self,
        ctx: &RequestContext,
        subject_token: &Secret,
        audience: &str,
    ) -> Result<TokenGrant, OAuthError> {
        let now = self.clock.now();
        let actor = self
            .authenticate(subject_token.expose())
            .await
            .map_err(|e| OAuthError::InvalidGrant(format!("the subject_token is not a live session: {e}")))?;
        // What the token will say is read beside the writer (the application, the holder's
        // identity and positions): only the session's being live must hold under the lock.
        let mut read = self.store.begin_read().await?;
        let client = match ClientId::parse(audience) {
            Ok(id) => read.client(&id).await?.filter(|c| c.disabled_at.is_none()),
            Err(_) => None,
        };
        let session = read.session_by_id(&actor.session).await?.ok_or_else(|| not_found("session", &actor.session))?;
        let identity = match (&client, actor.auth) {
            (Some(_), AuthMethod::Card) => Some(self.identity(&mut read, &session, now).await?),
            _ => None,
        };
        drop(read);
        let mut tx = self.store.begin_write().await?;
        let mut event = self.event(ctx, (&actor).into(), Action::OidcTokenExchange, "client", audience);
        event.subject_person = Some(actor.person.clone());
        let Some(client) = client else {
            let refusal = Refusal::new(Rule::ClientInvalid, "the audience is not a registered application");
            return Err(self.refuse_oauth(tx, event, refusal, OAuthError::InvalidTarget).await);
        };
        let Some(identity) = identity else {
            let refusal =
                Refusal::new(Rule::GrantInvalid, "only a card session can be exchanged for application tokens");
            return Err(self.refuse_oauth(tx, event, refusal, OAuthError::InvalidGrant).await);
        };
        // Under the lock: a session ended since is refused; one ended after revokes this token.
        let session = tx.session_by_id(&actor.session).await?.filter(|s| s.ended_at.is_none());
        let Some(session) = session else {
            let refusal = Refusal::new(Rule::SessionEnded, "the subject_token's session has ended");
            return Err(self.refuse_oauth(tx, event, refusal, OAuthError::InvalidGrant).await);
        };
        let scope = "openid profile nationalrbacaccess associatedorgs";
        let token = self.new_token(&client, &session, None, scope, now);
        tx.insert_token(&token).await?;
        event.detail.push(("token", token.id.clone()));
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(TokenGrant {
            token_id: token.id,
            client: client.id,
            session: session.id,
            scope: scope.into(),
            issued_at: now,
            expires_at: token.expires_at,
            id_token: None,
            identity,
        })
    }

    /// A token's state: active only while unrevoked, unexpired, and its session alive.
    pub async fn token_state(&self, token_id: &str) -> Result<Option<TokenState>, OAuthError> {
        let now = self.clock.now();
        let mut tx = self.store.begin_read().await?;
        let Some(token) = tx.token(token_id).await? else { return Ok(None) };
        let session = tx.session_by_id(&token.session).await?;
        let client = tx.client(&token.client).await?;
        let active = token.revoked_at.is_none()
            && token.expires_at > now
            && client.is_some_and(|c| c.disabled_at.is_none())
            && session.is_some_and(|s| s.ended_at.is_none() && !self.session_lapsed(&s, now));
        Ok(Some(TokenState { token, active }))
    }

    /// RFC 7662: an application asks whether a token issued to it is active. A token of
    /// another application is reported inactive.
    pub async fn introspect(
        &self,
        credentials: &ClientCredentials,
        token_id: Option<&str>,
    ) -> Result<Option<TokenState>, OAuthError> {
        let client = {
            let mut tx = self.store.begin_read().await?;
            self.authenticate_client(&mut tx, credentials, true).await?
        };
        let Some(token_id) = token_id else { return Ok(None) };
        Ok(self.token_state(token_id).await?.filter(|s| s.token.client == client.id))
    }

    /// The identity behind an active access token (userinfo).
    pub async fn userinfo(&self, token_id: &str) -> Result<Identity, OAuthError> {
        let inactive = || OAuthError::InvalidGrant("the access token is not active".into());
        let state = self.token_state(token_id).await?.filter(|s| s.active).ok_or_else(inactive)?;
        let mut tx = self.store.begin_read().await?;
        let session = tx.session_by_id(&state.token.session).await?.ok_or_else(inactive)?;
        Ok(self.identity(&mut tx, &session, self.clock.now()).await?)
    }

    /// RFC 7009: an application revokes one of its tokens. Unknown tokens, and tokens of other
    /// applications, are answered the same way and left alone.
    pub async fn revoke_token(
        &self,
        ctx: &RequestContext,
        credentials: &ClientCredentials,
        token_id: Option<&str>,
    ) -> Result<(), OAuthError> {
        let now = self.clock.now();
        let mut tx = self.store.begin_write().await?;
        let client = self.authenticate_client(&mut tx, credentials, false).await?;
        let Some(token) = (match token_id {
            Some(id) => tx.token(id).await?,
            None => None,
        }) else {
            return Ok(());
        };
        if token.client != client.id || !tx.revoke_token(&token.id, now).await? {
            return Ok(());
        }
        let mut event = self.event(ctx, AuditActor::system(), Action::OidcRevoke, "token", &token.id);
        event.subject_person = Some(token.person.clone());
        event.detail.push(("client", client.id.to_string()));
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The claims of a session's holder: names, every current position as national RBAC
    /// roles, their organisations, and the selected one.
    async fn identity(
        &self,
        tx: &mut Box<dyn Transaction>,
        session: &Session,
        now: OffsetDateTime,
    ) -> Result<Identity, RaError> {
        let person = self.load_person(tx, &session.person).await?;
        if person.status != ProfileStatus::Active {
            return Err(RaError::Refused(Refusal::new(Rule::ProfileClosed, "the profile is closed")));
        }
        let mut roles = Vec::new();
        let mut orgs: Vec<(OdsCode, String)> = Vec::new();
        for (assignment, position) in crate::sessions::current_positions(tx, &person.uuid, now.date()).await? {
            let granted = self.catalogue.granted(&position.activities);
            let role_name = self
                .catalogue
                .job_role_name(position.role.job_role())
                .map_or_else(|| position.name.to_string(), str::to_owned);
            let activity_names =
                granted.iter().map(|a| self.catalogue.activity(a).map_or_else(|| a.to_string(), |a| a.name.clone()));
            roles.push(RoleClaim {
                assignment: assignment.id,
                org: assignment.org.clone(),
                role: position.role.clone(),
                role_name,
                activity_names: activity_names.collect(),
                activity_codes: granted.iter().map(ToString::to_string).collect(),
            });
            if !orgs.iter().any(|(o, _)| *o == assignment.org) {
                let name = tx.organisation(&assignment.org).await?.map(|o| o.name.to_string()).unwrap_or_default();
                orgs.push((assignment.org.clone(), name));
            }
        }
        Ok(Identity {
            person: person.uuid.clone(),
            given_name: person.details.given_name.to_string(),
            family_name: person.details.family_name.to_string(),
            title: person.details.title.as_ref().map(ToString::to_string),
            selected: session.assignment,
            roles,
            orgs,
            auth: session.auth,
            auth_time: session.created_at,
        })
    }

    /// Delivers the back-channel logouts owed to applications, one round of at most 50.
    pub async fn deliver_logouts(&self, ctx: &RequestContext, sender: &dyn LogoutSender) -> Result<Delivery, RaError> {
        const ROUND: u32 = 50;
        const LEASE: Duration = Duration::minutes(1);
        let now = self.clock.now();
        let waiting = {
            let mut tx = self.store.begin_read().await?;
            tx.logouts_waiting(now).await?
        };
        if !waiting {
            return Ok(Delivery::default());
        }
        let mut tx = self.store.begin_write().await?;
        let logouts: Vec<PendingLogout> = tx.lease_logouts(now, now + LEASE, ROUND).await?;
        tx.commit().await?;
        let mut delivery = Delivery::default();
        for logout in logouts {
            let result = sender.send(&logout).await;
            let at = self.clock.now();
            let mut tx = self.store.begin_write().await?;
            match result {
                Ok(()) => {
                    tx.mark_logout_sent(logout.id, at).await?;
                    let mut event =
                        self.event(ctx, AuditActor::system(), Action::OidcLogoutSent, "session", &logout.session);
                    event.subject_person = Some(logout.person.clone());
                    event.detail.push(("client", logout.client.to_string()));
                    tx.record(&event).await?;
                    delivery.sent += 1;
                }
                Err(error) => {
                    let attempts = logout.attempts + 1;
                    tx.mark_logout_failed(logout.id, &error, at + retry_delay(attempts)).await?;
                    tracing::warn!(client = %logout.client, attempts, %error, "back-channel logout not delivered; it will be retried");
                    delivery.failed += 1;
                }
            }
            tx.commit().await?;
        }
        Ok(delivery)
    }
}

/// Compares two hashes without an early exit.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
