//! Signing in to the web console with the card.
//!
//! The browser keeps a random secret in a cookie; the sign-in page shows only the secret's
//! name (`console-` and half of its hash), which the workstation agent has the card sign, as
//! it signs an application's sign-in. careid then records the sign-in under that name, bound
//! to the card session, and the console acts as the session's position for as long as the
//! card session lives: the card out of the reader ends the console too. Nobody who lacks the
//! browser's secret can use the approval, and careid writes nothing until a card approves, so
//! an anonymous caller of the sign-in page makes careid store nothing.

use careid_domain::access::{Actor, Refusal, Rule};
use careid_domain::audit::{Action, AuditActor};
use careid_domain::login::SessionEnd;
use careid_domain::ports::{ConsoleSession, StoreError};

use crate::audit_orgs::AppendAudit;
use crate::error::{AuthenticateError, LoginError, RaError, not_found};
use crate::oidc::CardApproval;
use crate::{RequestContext, Service, secret_hash};

/// Prefix of a console sign-in's name, beside the authorization requests of applications.
pub const CONSOLE_SIGN_IN_PREFIX: &str = "console-";

/// The public name of the console sign-in a browser secret makes.
pub fn console_sign_in_id(browser_secret: &str) -> String {
    let hash = secret_hash(browser_secret);
    format!("{CONSOLE_SIGN_IN_PREFIX}{}", hex::encode(&hash[..16]))
}

impl Service {
    /// The card of a live session approves a console sign-in (the agent signed its name).
    pub async fn approve_console_sign_in(&self, ctx: &RequestContext, approval: &CardApproval) -> Result<(), RaError> {
        let now = self.clock.now();
        let id = &approval.authorization;
        let well_formed = id
            .strip_prefix(CONSOLE_SIGN_IN_PREFIX)
            .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !well_formed {
            return Err(not_found("console sign-in", id));
        }
        let mut tx = self.store.begin_write().await?;
        let session =
            tx.session_by_id(&approval.session).await?.ok_or_else(|| not_found("session", &approval.session))?;
        let mut event = self.event(ctx, AuditActor::system(), Action::ConsoleSignIn, "console", id);
        let checked = self.card_approved(&mut tx, approval, &session, &mut event, now).await?;
        if let Err(refusal) = checked {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let console = ConsoleSession {
            id: id.clone(),
            session: session.id.clone(),
            person: session.person,
            signed_in_at: now,
            ended_at: None,
        };
        if !tx.insert_console_session(&console).await? {
            let refusal = Refusal::new(Rule::GrantInvalid, "this console sign-in was already approved");
            return Err(self.refuse(tx, event, refusal).await);
        }
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Signs the browser holding `browser_secret` in with an interim (or recovery) credential,
    /// for someone who has no card yet: a session as `careid ra login` makes, which the
    /// console then acts through. The session's bearer token is never given out.
    pub async fn console_sign_in_with_credential(
        &self,
        ctx: &RequestContext,
        browser_secret: &str,
        credential: &careid_domain::secret::Secret,
        choice: Option<careid_domain::ids::AssignmentId>,
    ) -> Result<(), LoginError> {
        let outcome = self.login(ctx, credential, choice).await?;
        let now = self.clock.now();
        let id = console_sign_in_id(browser_secret);
        let mut tx = self.store.begin_write().await?;
        let mut event = self.event(ctx, (&outcome.actor).into(), Action::ConsoleSignIn, "console", &id);
        event.subject_person = Some(outcome.actor.person.clone());
        let console = ConsoleSession {
            id: id.clone(),
            session: outcome.session_id.clone(),
            person: outcome.actor.person.clone(),
            signed_in_at: now,
            ended_at: None,
        };
        if !tx.insert_console_session(&console).await? {
            let refusal = Refusal::new(Rule::GrantInvalid, "this browser is already signed in: reload the console");
            return Err(LoginError::from(self.refuse(tx, event, refusal).await));
        }
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Who the console acts as for the browser holding `browser_secret`: the card session's
    /// actor, while the sign-in and the card session both live.
    pub async fn console_actor(&self, browser_secret: &str) -> Result<Actor, AuthenticateError> {
        let id = console_sign_in_id(browser_secret);
        let mut tx = self.store.begin_read().await?;
        let console = tx.console_session(&id).await?.ok_or(AuthenticateError::NoSession)?;
        if console.ended_at.is_some() {
            return Err(AuthenticateError::NoSession);
        }
        let session = tx.session_by_id(&console.session).await?.ok_or(AuthenticateError::NoSession)?;
        drop(tx);
        self.actor_of_session(session).await
    }

    /// Why the console of the browser holding `browser_secret` no longer acts: how its card
    /// session ended (`None` while it lives, or where careid knows no such sign-in).
    pub async fn console_ended(&self, browser_secret: &str) -> Result<Option<SessionEnd>, StoreError> {
        let id = console_sign_in_id(browser_secret);
        let mut tx = self.store.begin_read().await?;
        let Some(console) = tx.console_session(&id).await? else { return Ok(None) };
        if console.ended_at.is_some() {
            return Ok(Some(SessionEnd::SignedOut));
        }
        let session = tx.session_by_id(&console.session).await?;
        Ok(session.and_then(|s| s.end_reason).and_then(|code| SessionEnd::parse(&code)))
    }

    /// Signs the browser holding `browser_secret` out of the console; the card session goes on.
    pub async fn console_sign_out(&self, ctx: &RequestContext, browser_secret: &str) -> Result<(), RaError> {
        let id = console_sign_in_id(browser_secret);
        let mut tx = self.store.begin_write().await?;
        let Some(console) = tx.console_session(&id).await? else { return Ok(()) };
        if !tx.end_console_session(&id, self.clock.now()).await? {
            return Ok(());
        }
        let mut event = self.event(ctx, AuditActor::system(), Action::ConsoleSignOut, "console", &id);
        event.actor.person = Some(console.person.clone());
        event.actor.session = Some(console.session.clone());
        event.subject_person = Some(console.person);
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(())
    }
}
