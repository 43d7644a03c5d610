//! The errors of the use cases.
//!
//! The RA's commands share `RaError`: they fail in the same five ways (bad input, a missing
//! record, a refusal by a named rule, a duplicate, the store), and the HTTP and CLI treat each
//! way alike. Sign-in has its own `LoginError`.

use careid_domain::access::Refusal;
use careid_domain::ids::{AssignmentId, InvalidInput};
use careid_domain::ports::StoreError;

/// Why an RA command did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RaError {
    /// A value broke a rule of its own (an ODS code's shape, three identity documents, ...).
    /// Fix the named field and try again.
    #[error("invalid {0}")]
    Invalid(#[from] InvalidInput),
    /// A referenced record does not exist (or is outside what the caller may see).
    #[error("no {what} {id}")]
    NotFound { what: &'static str, id: String },
    /// A rule refused it: permission, scope, separation of duties, or the record's state.
    /// The refusal is in the audit log.
    #[error("{0}")]
    Refused(Refusal),
    /// The record already exists: `existing` names it, `rule` says what kind of duplicate it
    /// is (a person or pending registration of them, or an organisation or application). A
    /// person's duplicate is a refusal in the audit log; a code already taken is bad input.
    #[error("{message}")]
    Duplicate { rule: careid_domain::access::Rule, existing: String, message: String },
    /// The session the request came with was ended (signed out, its card reported or
    /// removed, its position gone) before the use case's transaction began: nothing was done.
    #[error("{0}")]
    Unauthenticated(AuthenticateError),
    /// The database failed; nothing was changed. The details are in the operator's log.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl From<Refusal> for RaError {
    fn from(refusal: Refusal) -> RaError {
        RaError::Refused(refusal)
    }
}

pub(crate) fn not_found(what: &'static str, id: impl std::fmt::Display) -> RaError {
    RaError::NotFound { what, id: id.to_string() }
}

/// Why a sign-in did not give a session. Each is safe to show to the person signing in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// The credential is unknown, expired or for a closed profile; which one is in the audit
    /// log, not in the answer.
    #[error("the credential was not accepted (unknown, expired, or the profile is closed)")]
    CredentialRejected,
    /// The person holds no current position (or not the one chosen).
    #[error("you hold no current position{0}")]
    NoCurrentPosition(String),
    /// The person holds several current positions and must pick one.
    #[error("you hold several positions: choose one")]
    RoleSelectionNeeded(Vec<RoleChoice>),
    /// A card login refused by a named rule; the reason tells the holder what to do.
    #[error("{}", .0.message)]
    Refused(Refusal),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl From<RaError> for LoginError {
    fn from(e: RaError) -> LoginError {
        match e {
            RaError::Refused(refusal) => LoginError::Refused(refusal),
            RaError::Store(store) => LoginError::Store(store),
            other => {
                LoginError::Refused(Refusal::new(careid_domain::access::Rule::CredentialInvalid, other.to_string()))
            }
        }
    }
}

/// One position a person may sign in to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleChoice {
    pub assignment: AssignmentId,
    pub org: String,
    pub position_name: String,
    pub role: String,
}

/// Why a bearer token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthenticateError {
    #[error("no session for this token, or it has ended")]
    NoSession,
    #[error("the session expired")]
    Expired,
    #[error("the session's position is no longer current")]
    PositionEnded,
    #[error("store: {0}")]
    Store(#[from] StoreError),
}
