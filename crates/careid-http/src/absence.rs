//! Absences, working hours and the organisations' absence policies.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use careid_audit::format_time;
use careid_domain::absence::Absence;
use careid_domain::ids::{AssignmentId, OdsCode, PersonUuid, format_date, parse_date};
use careid_proto as wire;

use crate::App;
use crate::convert as c;
use crate::error::ApiError;
use crate::extract::{Authed, Body, PathParam};

pub(crate) fn absence_out(a: &Absence) -> wire::AbsenceInfo {
    wire::AbsenceInfo {
        id: a.id,
        person: a.person.to_string(),
        kind: a.kind.code().into(),
        first_day: format_date(a.first_day),
        last_day: format_date(a.last_day),
        recorded_by: a.recorded_by.to_string(),
        recorded_at: format_time(a.recorded_at),
    }
}

/// Records that a person is away (the RA or a sponsor, never the person themselves).
#[utoipa::path(post, path = "/api/v1/people/{uuid}/absences", tag = "absences", params(("uuid" = String, Path, description = "the person's 12-digit identifier")), request_body = wire::AbsenceRequest,
    responses((status = 201, body = wire::AbsenceInfo), (status = 403, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody)),
    security(("bearer" = [])))]
pub async fn absences_create(
    State(app): State<App>,
    auth: Authed,
    PathParam(uuid): PathParam<String>,
    Body(body): Body<wire::AbsenceRequest>,
) -> Result<(StatusCode, Json<wire::AbsenceInfo>), ApiError> {
    let person = PersonUuid::parse(&uuid)?;
    let first = parse_date("first_day", &body.first_day)?;
    let last = parse_date("last_day", &body.last_day)?;
    let absence = app.service.record_absence(&auth.ctx, &auth.actor, &person, &body.kind, first, last).await?;
    Ok((StatusCode::CREATED, Json(absence_out(&absence))))
}

/// A person's absences from today on.
#[utoipa::path(get, path = "/api/v1/people/{uuid}/absences", tag = "absences", params(("uuid" = String, Path, description = "the person's 12-digit identifier")),
    responses((status = 200, body = Vec<wire::AbsenceInfo>)), security(("bearer" = [])))]
pub async fn absences_list(
    State(app): State<App>,
    auth: Authed,
    PathParam(uuid): PathParam<String>,
) -> Result<Json<Vec<wire::AbsenceInfo>>, ApiError> {
    let person = PersonUuid::parse(&uuid)?;
    Ok(Json(app.service.absences(&auth.ctx, &auth.actor, &person).await?.iter().map(absence_out).collect()))
}

/// Cancels a recorded absence.
#[utoipa::path(post, path = "/api/v1/absences/{id}/cancel", tag = "absences", params(("id" = i64, Path, description = "the record's number")),
    responses((status = 204), (status = 403, body = wire::ErrorBody), (status = 404, body = wire::ErrorBody)), security(("bearer" = [])))]
pub async fn absences_cancel(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<i64>,
) -> Result<StatusCode, ApiError> {
    app.service.cancel_absence(&auth.ctx, &auth.actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets or clears the working hours of an assignment.
#[utoipa::path(put, path = "/api/v1/assignments/{id}/working-hours", tag = "absences", params(("id" = i64, Path, description = "the record's number")), request_body = wire::WorkingHoursRequest,
    responses((status = 200, body = wire::Assignment), (status = 403, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody)),
    security(("bearer" = [])))]
pub async fn working_hours_set(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<i64>,
    Body(body): Body<wire::WorkingHoursRequest>,
) -> Result<Json<wire::Assignment>, ApiError> {
    let assignment = AssignmentId::parse(&id.to_string())?;
    let updated =
        app.service.set_working_hours(&auth.ctx, &auth.actor, assignment, body.working_hours.as_deref()).await?;
    let today = careid_domain::absence::uk_local(careid_domain::ports::Clock::now(&**app.service.clock())).date();
    Ok(Json(c::assignment_out(&updated, None, today)))
}

/// Sets what an organisation does about logins while absent or outside working hours.
#[utoipa::path(put, path = "/api/v1/organisations/{ods_code}/absence-policy", tag = "absences", params(("ods_code" = String, Path, description = "the organisation's ODS code")),
    request_body = wire::AbsencePolicyRequest,
    responses((status = 200, body = wire::AbsencePolicyRequest), (status = 403, body = wire::ErrorBody)), security(("bearer" = [])))]
pub async fn absence_policy_set(
    State(app): State<App>,
    auth: Authed,
    PathParam(ods): PathParam<String>,
    Body(body): Body<wire::AbsencePolicyRequest>,
) -> Result<Json<wire::AbsencePolicyRequest>, ApiError> {
    let org = OdsCode::parse(&ods)?;
    let policy = app.service.set_absence_policy(&auth.ctx, &auth.actor, &org, &body.policy).await?;
    Ok(Json(wire::AbsencePolicyRequest { policy: policy.code().into() }))
}
