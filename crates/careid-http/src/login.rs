//! Card login, card presence and sessions: challenge, login, heartbeat, list and end.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use careid_audit::format_time;
use careid_domain::ids::{AssignmentId, OdsCode};
use careid_domain::login::{SessionEnd, Workstation};
use careid_proto as wire;
use careid_service::{CardLogin, Heartbeat, SessionView, WrongPasscodeReport};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::App;
use crate::cards::base64_field;
use crate::convert as c;
use crate::error::ApiError;
use crate::extract::{Authed, Body, Ctx, Params, PathParam};
use crate::limit::{Kind, target_of};

/// A fresh single-use challenge for one workstation's card to sign (valid for a minute).
#[utoipa::path(post, path = "/api/v1/login/challenge", tag = "sessions", request_body = wire::ChallengeRequest,
    responses((status = 200, body = wire::Challenge), (status = 400, body = wire::ErrorBody)))]
pub async fn login_challenge(
    State(app): State<App>,
    Body(body): Body<wire::ChallengeRequest>,
) -> Result<Json<wire::Challenge>, ApiError> {
    let workstation = Workstation::parse(&body.workstation)?;
    app.limit_target(Kind::Login, &format!("workstation:{workstation}"))?;
    let issued = app.service.login_challenge(&workstation)?;
    let expires_at = time::OffsetDateTime::from_unix_timestamp(issued.expires_at).map(format_time).unwrap_or_default();
    Ok(Json(wire::Challenge { challenge: issued.text, expires_at }))
}

/// Logs in with the card's signature over a challenge; the session lives while the card keeps
/// proving its presence.
#[utoipa::path(post, path = "/api/v1/login/card", tag = "sessions", request_body = wire::CardLoginRequest,
    responses((status = 201, body = wire::CardLoginResponse), (status = 401, body = wire::ErrorBody),
        (status = 403, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody)))]
pub async fn login_card(
    State(app): State<App>,
    Ctx(ctx): Ctx,
    Body(body): Body<wire::CardLoginRequest>,
) -> Result<(StatusCode, Json<wire::CardLoginResponse>), ApiError> {
    let selected = match (&body.org, body.assignment_id) {
        (Some(org), Some(a)) => Some((OdsCode::parse(org)?, AssignmentId::parse(&a.to_string())?)),
        (None, None) => None,
        _ => {
            return Err(
                careid_domain::ids::InvalidInput::new("assignment_id", "give org and assignment_id together").into()
            );
        }
    };
    let login = CardLogin {
        challenge: body.challenge.trim().to_owned(),
        workstation: Workstation::parse(&body.workstation)?,
        certificate: base64_field("certificate", &body.certificate)?,
        selected,
        time: body.time,
        terms_accepted: body.terms_accepted,
        signature: base64_field("signature", &body.signature)?,
    };
    app.limit_target(Kind::Login, &target_of(&login.certificate))?;
    let outcome = app.service.card_login(&ctx, &login).await?;
    let settings = app.service.settings();
    let response = wire::CardLoginResponse {
        session: wire::LoginResponse {
            token: outcome.token.expose().to_owned(),
            session_id: outcome.session_id,
            expires_at: format_time(outcome.expires_at),
            acting: c::acting_out(&outcome.actor),
            notice: outcome.notice,
        },
        heartbeat_interval_seconds: settings.heartbeat_interval.whole_seconds(),
        presence_grace_seconds: settings.presence_grace.whole_seconds(),
    };
    Ok((StatusCode::CREATED, Json(response)))
}

/// The agent reports that the card refused the holder's passcode before any login: careid
/// counts it against the card and locks the card at the third in a row, whatever the card does.
#[utoipa::path(post, path = "/api/v1/login/wrong-passcode", tag = "sessions", request_body = wire::WrongPasscodeRequest,
    responses((status = 200, body = wire::WrongPasscodeRecorded), (status = 401, body = wire::ErrorBody)))]
pub async fn login_wrong_passcode(
    State(app): State<App>,
    Ctx(ctx): Ctx,
    Body(body): Body<wire::WrongPasscodeRequest>,
) -> Result<Json<wire::WrongPasscodeRecorded>, ApiError> {
    let report = WrongPasscodeReport {
        challenge: body.challenge.trim().to_owned(),
        workstation: Workstation::parse(&body.workstation)?,
        certificate: base64_field("certificate", &body.certificate)?,
    };
    app.limit_target(Kind::Login, &target_of(&report.certificate))?;
    let counted = app.service.wrong_passcode_at_login(&ctx, &report).await?;
    Ok(Json(wire::WrongPasscodeRecorded {
        card_id: counted.card,
        state: counted.state.code().into(),
        wrong_passcodes_in_a_row: counted.in_a_row,
    }))
}

/// The card proves it is still in the reader. No bearer token: the card's signature over the
/// session and a rising counter is the proof.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/heartbeat", tag = "sessions", params(("id" = String, Path, description = "the session's identifier")), request_body = wire::HeartbeatRequest,
    responses((status = 200, body = wire::HeartbeatAccepted), (status = 401, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody)))]
pub async fn sessions_heartbeat(
    State(app): State<App>,
    Ctx(ctx): Ctx,
    PathParam(id): PathParam<String>,
    Body(body): Body<wire::HeartbeatRequest>,
) -> Result<Json<wire::HeartbeatAccepted>, ApiError> {
    let beat = Heartbeat {
        session: id,
        counter: body.counter,
        time: body.time,
        signature: base64_field("signature", &body.signature)?,
    };
    let next = app.service.heartbeat(&ctx, &beat).await?;
    Ok(Json(wire::HeartbeatAccepted { next_proof_by: format_time(next) }))
}

pub(crate) fn session_out(s: &SessionView) -> wire::SessionInfo {
    wire::SessionInfo {
        session_id: s.id.clone(),
        person: s.person.to_string(),
        assignment_id: s.assignment.0,
        auth: s.auth.code().into(),
        workstation: s.workstation.clone(),
        created_at: format_time(s.created_at),
        last_seen_at: format_time(s.last_seen_at),
        last_proof_at: s.last_proof_at.map(format_time),
        expires_at: format_time(s.expires_at),
    }
}

/// The caller's own live sessions.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions",
    responses((status = 200, body = [wire::SessionInfo])), security(("bearer" = [])))]
pub async fn sessions_list(State(app): State<App>, auth: Authed) -> Result<Json<Vec<wire::SessionInfo>>, ApiError> {
    Ok(Json(app.service.my_sessions(&auth.actor).await?.iter().map(session_out).collect()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EndParams {
    /// `signed_out` (the default) or `card_removed`, for one's own session.
    pub reason: Option<String>,
}

fn end_reason(p: &EndParams) -> Result<SessionEnd, ApiError> {
    match p.reason.as_deref() {
        None | Some("signed_out") => Ok(SessionEnd::SignedOut),
        Some("card_removed") => Ok(SessionEnd::CardRemoved),
        Some(_) => Err(careid_domain::ids::InvalidInput::new("reason", "must be signed_out or card_removed").into()),
    }
}

/// Ends the caller's session (signed out, or the agent saw the card leave the reader).
#[utoipa::path(delete, path = "/api/v1/sessions/current", tag = "sessions", params(EndParams),
    responses((status = 204)), security(("bearer" = [])))]
pub async fn sessions_delete(
    State(app): State<App>,
    auth: Authed,
    Params(p): Params<EndParams>,
) -> Result<StatusCode, ApiError> {
    app.service.logout(&auth.ctx, &auth.actor, end_reason(&p)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends a session: one's own, or (RA, privacy officer) anyone's within scope.
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "sessions", params(("id" = String, Path, description = "the session's identifier"), EndParams),
    responses((status = 204), (status = 403, body = wire::ErrorBody), (status = 404, body = wire::ErrorBody)), security(("bearer" = [])))]
pub async fn sessions_end(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
    Params(p): Params<EndParams>,
) -> Result<StatusCode, ApiError> {
    app.service.end_session(&auth.ctx, &auth.actor, &id, end_reason(&p)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
