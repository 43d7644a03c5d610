//! The OpenID Connect provider's use cases, with a virtual card approving: client registration
//! by the RA Manager, authorization requests, the card's approval, the code exchange with
//! PKCE, token exchange, introspection, revocation, and tokens dying with their session.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use std::sync::Mutex;

use async_trait::async_trait;
use careid_card::Card;
use careid_domain::access::{Actor, Rule};
use careid_domain::login::SessionEnd;
use careid_domain::oidc::{AuthorizeMessage, PendingLogout};
use careid_domain::ports::LogoutSender;
use careid_domain::secret::Secret;
use careid_service::{
    AuthorizationRequest, AuthorizeError, CardApproval, ClientCredentials, LoginOutcome, NewClient, OAuthError,
    RaError, TokenGrant,
};
use support::cards::{IssuedCard, PASSCODE, answer, holder_with_card};
use support::{World, ctx, world};
use time::Duration;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// A change to an authorization request that makes it wrong.
type Change = fn(&mut AuthorizationRequest);

const REDIRECT: &str = "https://records.example.nhs.uk/callback";

async fn register(w: &World, id: &str, kind: &str, logout: Option<&str>) -> ClientCredentials {
    let new = NewClient {
        id: id.into(),
        name: format!("{id} application"),
        kind: kind.into(),
        redirect_uris: vec![REDIRECT.into()],
        backchannel_logout_uri: logout.map(str::to_owned),
    };
    let (client, secret) = w.service.register_client(&ctx(), &w.manager, new).await.unwrap();
    ClientCredentials { id: client.id.to_string(), secret }
}

fn request(client: &str) -> AuthorizationRequest {
    AuthorizationRequest {
        client_id: client.into(),
        redirect_uri: REDIRECT.into(),
        response_type: "code".into(),
        scope: "openid profile nationalrbacaccess associatedorgs".into(),
        state: Some("st-1".into()),
        nonce: Some("n-1".into()),
        code_challenge: Some(CHALLENGE.into()),
        code_challenge_method: Some("S256".into()),
    }
}

/// What the agent does when careid's page asks: the session's card signs the request's id.
fn approval(w: &World, card: &mut IssuedCard, authorization: &str, session: &str) -> CardApproval {
    let time = w.clock_now().unix_timestamp();
    let message = AuthorizeMessage { authorization, session, time }.to_bytes();
    let signature = card.card.sign(&Secret::new(PASSCODE.into()), &message).unwrap();
    CardApproval { authorization: authorization.into(), session: session.into(), time, signature }
}

/// A holder logged in with their card at a workstation.
async fn card_session(w: &World, given: &str, ni: &str) -> (Actor, IssuedCard, LoginOutcome) {
    let (holder, mut card) = holder_with_card(w, given, ni).await;
    let login = answer(w, &mut card, "ward7-pc3", None);
    let outcome = w.service.card_login(&ctx(), &login).await.unwrap();
    (holder, card, outcome)
}

/// The code of an approved authorization request.
async fn code(w: &World, client: &str, card: &mut IssuedCard, session: &str) -> String {
    let (authorization, _) = w.service.begin_authorization(&ctx(), &request(client)).await.unwrap();
    let approved =
        w.service.approve_authorization(&ctx(), &approval(w, card, &authorization.id, session)).await.unwrap();
    assert_eq!(approved.redirect_uri, REDIRECT);
    assert_eq!(approved.state.as_deref(), Some("st-1"));
    approved.code.expose().to_owned()
}

async fn exchange(w: &World, client: &ClientCredentials, code: &str) -> Result<TokenGrant, OAuthError> {
    w.service.exchange_code(&ctx(), client, code, REDIRECT, VERIFIER).await
}

async fn active(w: &World, token: &str) -> bool {
    w.service.token_state(token).await.unwrap().is_some_and(|s| s.active)
}

#[tokio::test]
async fn only_the_ra_manager_registers_applications() {
    let w = world().await;
    let client = register(&w, "gp-records", "confidential", None).await;
    let secret = client.secret.clone().unwrap();
    assert!(secret.expose().starts_with("careid-client-"));
    let public = register(&w, "desktop-viewer", "public", None).await;
    assert!(public.secret.is_none(), "a public client has no secret");

    let new = |id: &str, redirect: &str| NewClient {
        id: id.into(),
        name: "Another".into(),
        kind: "confidential".into(),
        redirect_uris: vec![redirect.into()],
        backchannel_logout_uri: None,
    };
    let before = w.audit_len().await;
    let refused = w.service.register_client(&ctx(), &w.agent, new("agent-app", REDIRECT)).await;
    w.assert_refused(before, refused, Rule::RoleNotPermitted).await;
    let duplicate = w.service.register_client(&ctx(), &w.manager, new("gp-records", REDIRECT)).await;
    assert!(matches!(duplicate, Err(RaError::Duplicate { .. })), "{duplicate:?}");
    let insecure = w.service.register_client(&ctx(), &w.manager, new("plain-http", "http://records.example/cb")).await;
    assert!(matches!(&insecure, Err(RaError::Invalid(e)) if e.field == "redirect_uris"), "{insecure:?}");
    let listed = w.service.clients(&w.manager).await.unwrap();
    assert_eq!(listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["desktop-viewer", "gp-records"]);
    assert!(w.service.clients(&w.agent).await.is_err());

    // Nothing secret is kept or logged: the store has the hash only.
    let stored = listed.iter().find(|c| c.id.as_str() == "gp-records").unwrap();
    assert_ne!(stored.secret_hash.unwrap().to_vec(), secret.expose().as_bytes().to_vec());
}

#[tokio::test]
async fn a_card_session_signs_an_application_in_with_the_claims_it_expects() {
    let w = world().await;
    let client = register(&w, "gp-records", "confidential", None).await;
    let (holder, mut card, session) = card_session(&w, "Ada", "CE500001A").await;
    let code = code(&w, "gp-records", &mut card, &session.session_id).await;
    let grant = exchange(&w, &client, &code).await.unwrap();
    assert_eq!(grant.session, session.session_id);
    assert_eq!(grant.id_token, Some(Some("n-1".into())), "the ID token carries the nonce");
    let identity = &grant.identity;
    assert_eq!(identity.person, holder.person);
    assert_eq!(identity.given_name, "Ada");
    assert_eq!(identity.selected, holder.assignment);
    let role = identity.roles.iter().find(|r| r.assignment == holder.assignment).unwrap();
    assert_eq!(role.org, w.practice_a);
    let orgs: Vec<&careid_domain::ids::OdsCode> = identity.orgs.iter().map(|(o, _)| o).collect();
    assert_eq!(orgs, [&w.practice_a]);
    assert!(active(&w, &grant.token_id).await);
    assert_eq!(w.service.userinfo(&grant.token_id).await.unwrap().person, holder.person);
    let last = w.last_audit().await;
    assert_eq!(last.get("action"), Some("oidc.token"));
    assert_eq!(last.get("actor.session"), Some(session.session_id.as_str()));
}

#[tokio::test]
async fn requests_from_unknown_applications_or_to_unregistered_addresses_go_nowhere() {
    let w = world().await;
    register(&w, "gp-records", "confidential", None).await;
    let unknown = w.service.begin_authorization(&ctx(), &request("nobody-app")).await;
    assert!(matches!(unknown, Err(AuthorizeError::NotRedirectable(_))), "{unknown:?}");
    for near in [
        "https://records.example.nhs.uk/callback/",
        "https://records.example.nhs.uk/callback?x=1",
        "https://evil.example/cb",
    ] {
        let before = w.audit_len().await;
        let mut bad = request("gp-records");
        bad.redirect_uri = near.into();
        let result = w.service.begin_authorization(&ctx(), &bad).await;
        assert!(matches!(result, Err(AuthorizeError::NotRedirectable(_))), "{near}: {result:?}");
        assert_eq!(w.audit_len().await, before + 1);
        assert_eq!(w.last_audit().await.get("rule"), Some("grant_invalid"));
    }
    // A known application's own mistakes go back to it.
    let cases: [(Change, &str); 5] = [
        (|r| r.code_challenge = None, "invalid_request"),
        (|r| r.code_challenge_method = Some("plain".into()), "invalid_request"),
        (|r| r.scope = "profile".into(), "invalid_request"),
        (|r| r.response_type = "token".into(), "unsupported_response_type"),
        (|r| r.state = Some("x\u{7}".into()), "invalid_request"),
    ];
    for (change, want) in cases {
        let mut bad = request("gp-records");
        change(&mut bad);
        match w.service.begin_authorization(&ctx(), &bad).await {
            Err(AuthorizeError::Redirect { error, redirect_uri, state, .. }) => {
                assert_eq!(error, want);
                assert_eq!(redirect_uri, REDIRECT);
                assert_eq!(state, bad.state);
            }
            other => panic!("expected a redirect with {want}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn only_the_sessions_own_card_approves_and_only_once_in_time() {
    let w = world().await;
    register(&w, "gp-records", "confidential", None).await;
    let (_, mut card, session) = card_session(&w, "Bea", "CE500002A").await;
    let (_, mut other_card, _) = card_session(&w, "Cal", "CE500003A").await;
    let (authorization, _) = w.service.begin_authorization(&ctx(), &request("gp-records")).await.unwrap();

    let before = w.audit_len().await;
    let forged = approval(&w, &mut other_card, &authorization.id, &session.session_id);
    w.assert_refused(before, w.service.approve_authorization(&ctx(), &forged).await, Rule::SignatureInvalid).await;

    let mut stale = approval(&w, &mut card, &authorization.id, &session.session_id);
    stale.time -= 600;
    let message = AuthorizeMessage { authorization: &authorization.id, session: &session.session_id, time: stale.time };
    stale.signature = card.card.sign(&Secret::new(PASSCODE.into()), &message.to_bytes()).unwrap();
    let before = w.audit_len().await;
    w.assert_refused(before, w.service.approve_authorization(&ctx(), &stale).await, Rule::ChallengeInvalid).await;

    let good = approval(&w, &mut card, &authorization.id, &session.session_id);
    w.service.approve_authorization(&ctx(), &good).await.unwrap();
    let before = w.audit_len().await;
    let again = approval(&w, &mut card, &authorization.id, &session.session_id);
    w.assert_refused(before, w.service.approve_authorization(&ctx(), &again).await, Rule::GrantInvalid).await;

    // A request left waiting expires.
    let (late, _) = w.service.begin_authorization(&ctx(), &request("gp-records")).await.unwrap();
    w.clock.advance(Duration::minutes(6));
    let beat = support::cards::beat(&mut card, &session.session_id, 1, w.clock_now().unix_timestamp());
    // (The session itself lapsed too: no heartbeat for six minutes.)
    assert!(w.service.heartbeat(&ctx(), &beat).await.is_err());
    let before = w.audit_len().await;
    let result = w.service.approve_authorization(&ctx(), &approval(&w, &mut card, &late.id, &session.session_id)).await;
    w.assert_refused(before, result, Rule::GrantInvalid).await;
}

#[tokio::test]
async fn a_code_needs_its_client_redirect_and_verifier_and_is_used_once() {
    let w = world().await;
    let client = register(&w, "gp-records", "confidential", None).await;
    let other = register(&w, "pharmacy-app", "confidential", None).await;
    let (_, mut card, session) = card_session(&w, "Dee", "CE500004A").await;
    let code = code(&w, "gp-records", &mut card, &session.session_id).await;

    let wrong_secret =
        ClientCredentials { id: client.id.clone(), secret: Some(Secret::new("careid-client-guess".into())) };
    let result = exchange(&w, &wrong_secret, &code).await;
    assert!(matches!(result, Err(OAuthError::InvalidClient(_))), "{result:?}");
    assert_eq!(w.last_audit().await.get("rule"), Some("client_invalid"));
    let result = exchange(&w, &other, &code).await;
    assert!(matches!(result, Err(OAuthError::InvalidGrant(_))), "{result:?}");
    let result =
        w.service.exchange_code(&ctx(), &client, &code, "https://records.example.nhs.uk/other", VERIFIER).await;
    assert!(matches!(result, Err(OAuthError::InvalidGrant(_))), "{result:?}");
    let wrong_verifier = "x".repeat(43);
    let before = w.audit_len().await;
    let result = w.service.exchange_code(&ctx(), &client, &code, REDIRECT, &wrong_verifier).await;
    assert!(matches!(&result, Err(OAuthError::InvalidGrant(m)) if m.contains("PKCE")), "{result:?}");
    assert_eq!(w.audit_len().await, before + 1);
    assert_eq!(w.last_audit().await.get("rule"), Some("grant_invalid"));

    // None of those used the code up; the right exchange does.
    let grant = exchange(&w, &client, &code).await.unwrap();
    assert!(active(&w, &grant.token_id).await);
    // Presented again: refused, and what was issued with it is revoked.
    let result = exchange(&w, &client, &code).await;
    assert!(matches!(result, Err(OAuthError::InvalidGrant(_))), "{result:?}");
    let last = w.last_audit().await;
    assert_eq!(last.get("rule"), Some("code_reused"));
    assert_eq!(last.get("detail.tokens_revoked"), Some("1"));
    assert!(!active(&w, &grant.token_id).await, "a reused code revokes its tokens");

    // An unused code expires after a minute.
    let late = support::cards::beat(&mut card, &session.session_id, 1, w.clock_now().unix_timestamp());
    w.service.heartbeat(&ctx(), &late).await.unwrap();
    let code = self::code(&w, "gp-records", &mut card, &session.session_id).await;
    w.clock.advance(Duration::seconds(61));
    let result = exchange(&w, &client, &code).await;
    assert!(matches!(&result, Err(OAuthError::InvalidGrant(m)) if m.contains("expired")), "{result:?}");
}

#[derive(Debug, Default)]
struct RecordingSender(Mutex<Vec<PendingLogout>>);

#[async_trait]
impl LogoutSender for RecordingSender {
    async fn send(&self, logout: &PendingLogout) -> Result<(), String> {
        self.0.lock().unwrap().push(logout.clone());
        Ok(())
    }
}

#[tokio::test]
async fn ending_the_session_kills_its_tokens_and_tells_its_applications() {
    let w = world().await;
    let client = register(&w, "gp-records", "confidential", Some("https://records.example.nhs.uk/logout")).await;
    register(&w, "no-logout-app", "confidential", None).await;
    let (holder, mut card, session) = card_session(&w, "Eve", "CE500005A").await;
    let code = code(&w, "gp-records", &mut card, &session.session_id).await;
    let grant = exchange(&w, &client, &code).await.unwrap();
    let exchanged = w.service.exchange_session_token(&ctx(), &session.token, "no-logout-app").await.unwrap();
    assert!(active(&w, &exchanged.token_id).await);

    // The card leaves the reader.
    w.service.logout(&ctx(), &session.actor, SessionEnd::CardRemoved).await.unwrap();
    assert!(!active(&w, &grant.token_id).await);
    assert!(!active(&w, &exchanged.token_id).await);
    assert!(w.service.userinfo(&grant.token_id).await.is_err());
    let sender = RecordingSender::default();
    let delivery = w.service.deliver_logouts(&ctx(), &sender).await.unwrap();
    assert_eq!((delivery.sent, delivery.failed), (1, 0), "only the application with a logout URI is told");
    let sent = sender.0.lock().unwrap().clone();
    assert_eq!(sent[0].client.as_str(), "gp-records");
    assert_eq!(sent[0].session, session.session_id);
    assert_eq!(sent[0].person, holder.person);
    assert_eq!(w.last_audit().await.get("action"), Some("oidc.backchannel_logout"));
    assert_eq!(w.service.deliver_logouts(&ctx(), &sender).await.unwrap().sent, 0, "told once");
}

#[tokio::test]
async fn tokens_die_the_moment_the_card_stops_proving_its_presence() {
    let w = world().await;
    let client = register(&w, "gp-records", "confidential", None).await;
    let (_, mut card, session) = card_session(&w, "Fay", "CE500006A").await;
    let code = code(&w, "gp-records", &mut card, &session.session_id).await;
    let grant = exchange(&w, &client, &code).await.unwrap();
    w.clock.advance(w.service.settings().presence_grace + Duration::seconds(1));
    // No sweep has run: the token is dead all the same.
    assert!(!active(&w, &grant.token_id).await);
    let state = w.service.introspect(&client, Some(&grant.token_id)).await.unwrap().unwrap();
    assert!(!state.active);
}

#[tokio::test]
async fn token_exchange_introspection_and_revocation_keep_to_their_own_application() {
    let w = world().await;
    let app = register(&w, "gp-records", "confidential", None).await;
    let other = register(&w, "pharmacy-app", "confidential", None).await;
    let public = register(&w, "desktop-viewer", "public", None).await;
    let (holder, _card, session) = card_session(&w, "Gus", "CE500007A").await;

    let grant = w.service.exchange_session_token(&ctx(), &session.token, "gp-records").await.unwrap();
    assert_eq!(grant.identity.person, holder.person);
    assert!(grant.id_token.is_none(), "token exchange issues an access token only");
    assert_eq!(w.last_audit().await.get("action"), Some("oidc.token_exchange"));
    let unknown = w.service.exchange_session_token(&ctx(), &session.token, "nobody-app").await;
    assert!(matches!(unknown, Err(OAuthError::InvalidTarget(_))), "{unknown:?}");
    let dead = w.service.exchange_session_token(&ctx(), &Secret::new("careid-session-nope".into()), "gp-records").await;
    assert!(matches!(dead, Err(OAuthError::InvalidGrant(_))), "{dead:?}");
    // A session signed in without a card is not exchanged (an interim credential goes only to
    // someone with no card).
    let cardless = w.new_person("Ivy", "CE500017A", &w.practice_a).await;
    let start = time::macros::date!(2026 - 01 - 01);
    w.service.assign_position(&ctx(), &w.agent, &cardless, w.receptionist_a, start, None).await.unwrap();
    let (credential, _) = w.service.issue_credential(&ctx(), &w.manager, &cardless).await.unwrap();
    let interim = w.service.login(&ctx(), &credential, None).await.unwrap();
    let before = w.audit_len().await;
    let refused = w.service.exchange_session_token(&ctx(), &interim.token, "gp-records").await;
    assert!(matches!(refused, Err(OAuthError::InvalidGrant(_))), "{refused:?}");
    assert_eq!(w.audit_len().await, before + 1);

    let seen = w.service.introspect(&app, Some(&grant.token_id)).await.unwrap();
    assert!(seen.is_some_and(|s| s.active));
    assert!(w.service.introspect(&other, Some(&grant.token_id)).await.unwrap().is_none(), "not another app's business");
    let result = w.service.introspect(&public, Some(&grant.token_id)).await;
    assert!(matches!(result, Err(OAuthError::InvalidClient(_))), "a public client cannot introspect: {result:?}");

    w.service.revoke_token(&ctx(), &other, Some(&grant.token_id)).await.unwrap();
    assert!(active(&w, &grant.token_id).await, "another application cannot revoke it");
    w.service.revoke_token(&ctx(), &app, Some(&grant.token_id)).await.unwrap();
    assert!(!active(&w, &grant.token_id).await);
    assert_eq!(w.last_audit().await.get("action"), Some("oidc.revoke"));
    w.service.revoke_token(&ctx(), &app, Some("unknown-token")).await.unwrap();
}

#[tokio::test]
async fn a_disabled_application_signs_nobody_in_and_its_tokens_stop() {
    let w = world().await;
    let app = register(&w, "gp-records", "confidential", None).await;
    let (_, _card, session) = card_session(&w, "Hal", "CE500008A").await;
    let grant = w.service.exchange_session_token(&ctx(), &session.token, "gp-records").await.unwrap();
    w.service.disable_client(&ctx(), &w.manager, "gp-records").await.unwrap();
    assert!(!active(&w, &grant.token_id).await);
    let result = w.service.begin_authorization(&ctx(), &request("gp-records")).await;
    assert!(matches!(result, Err(AuthorizeError::NotRedirectable(_))), "{result:?}");
    let result = w.service.introspect(&app, Some(&grant.token_id)).await;
    assert!(matches!(result, Err(OAuthError::InvalidClient(_))), "{result:?}");
}
