//! The one place errors become HTTP: status, stable code, and a message safe to show. Internals
//! are logged here and never returned.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use careid_domain::access::Rule;
use careid_domain::ids::InvalidInput;
use careid_proto::ErrorDetail;
use careid_service::{AuthenticateError, LoginError, RaError};

/// An error on its way to the client. The request id is filled in by the request-id layer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: Box<ErrorDetail>,
    /// For 429: when to try again, in seconds (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            detail: Box::new(ErrorDetail {
                code: code.into(),
                message: message.into(),
                field: None,
                rule: None,
                existing: None,
                choices: Vec::new(),
                request_id: String::new(),
            }),
            retry_after: None,
        }
    }

    pub fn malformed(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_request", message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    fn unavailable(internal: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %internal, "store failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the store is unavailable; nothing was changed",
        )
    }
}

impl From<InvalidInput> for ApiError {
    fn from(e: InvalidInput) -> ApiError {
        let mut error = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", e.to_string());
        error.detail.field = Some(e.field.into());
        error
    }
}

/// Rules about who may act answer 403; rules about a record's state answer 409.
fn refusal_status(rule: Rule) -> StatusCode {
    match rule {
        Rule::RoleNotPermitted
        | Rule::ByRequestOnly
        | Rule::OutOfScope
        | Rule::OwnRecord
        | Rule::RequesterIsApprover
        | Rule::PositionNotAssignable
        | Rule::CredentialInvalid
        | Rule::InvestigatorConflicted
        | Rule::NoSuchPosition
        | Rule::OffDuty
        | Rule::NotTheActor => StatusCode::FORBIDDEN,
        Rule::DuplicatePerson
        | Rule::AlreadyExists
        | Rule::ProfileClosed
        | Rule::NotPending
        | Rule::AlreadyAssigned
        | Rule::RoleSelectionNeeded
        | Rule::OneLiveCard
        | Rule::CardState
        | Rule::InvestigationOpen
        | Rule::CertificateExpired
        | Rule::RenewalNotDue
        | Rule::OneLiveSession
        | Rule::InterimNeedsNoCard
        | Rule::SessionEnded
        | Rule::ClientInvalid
        | Rule::GrantInvalid
        | Rule::CodeReused
        | Rule::AlreadyFlagged => StatusCode::CONFLICT,
        Rule::ChallengeInvalid | Rule::SignatureInvalid => StatusCode::UNAUTHORIZED,
        Rule::TermsNotAccepted => StatusCode::UNPROCESSABLE_ENTITY,
        Rule::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
    }
}

impl From<RaError> for ApiError {
    fn from(e: RaError) -> ApiError {
        match e {
            RaError::Invalid(invalid) => invalid.into(),
            RaError::Unauthenticated(e) => e.into(),
            RaError::NotFound { what, id } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no {what} {id}"))
            }
            RaError::Refused(refusal) => {
                let mut error = ApiError::new(refusal_status(refusal.rule), "refused", refusal.message);
                error.detail.rule = Some(refusal.rule.code().into());
                error
            }
            RaError::Duplicate { rule, existing, message } => {
                let mut error = ApiError::new(StatusCode::CONFLICT, "duplicate", message);
                error.detail.rule = Some(rule.code().into());
                error.detail.existing = Some(existing);
                error
            }
            RaError::Store(store) => ApiError::unavailable(&store),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> ApiError {
        let message = e.to_string();
        match e {
            LoginError::CredentialRejected => ApiError::new(StatusCode::UNAUTHORIZED, "credential_rejected", message),
            LoginError::NoCurrentPosition(_) => ApiError::new(StatusCode::FORBIDDEN, "no_current_position", message),
            LoginError::RoleSelectionNeeded(choices) => {
                let mut error = ApiError::new(StatusCode::CONFLICT, "role_selection_needed", message);
                error.detail.choices = choices
                    .into_iter()
                    .map(|c| careid_proto::RoleChoice {
                        assignment_id: c.assignment.0,
                        org: c.org,
                        position_name: c.position_name,
                        role: c.role,
                    })
                    .collect();
                error
            }
            LoginError::Refused(refusal) => {
                let mut error = ApiError::new(refusal_status(refusal.rule), "login_refused", refusal.message);
                error.detail.rule = Some(refusal.rule.code().into());
                error
            }
            LoginError::Store(store) => ApiError::unavailable(&store),
        }
    }
}

impl From<AuthenticateError> for ApiError {
    fn from(e: AuthenticateError) -> ApiError {
        match e {
            AuthenticateError::Store(store) => ApiError::unavailable(&store),
            other => ApiError::unauthenticated(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The request-id layer turns this extension into the JSON body, with the request id.
        let mut response = self.status.into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response.extensions_mut().insert(*self.detail);
        response
    }
}
