//! The API's handlers: extract, convert, call the service, convert back.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use careid_audit::format_time;
use careid_domain::ids::{
    AssignmentId, NamePart, OdsCode, PersonUuid, PositionId, RegistrationId, RequestId, parse_note,
};
use careid_domain::secret::Secret;
use careid_proto as wire;
use careid_service::ReadAudit;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::App;
use crate::convert::{self as c};
use crate::error::ApiError;
use crate::extract::{Authed, Body, Ctx, Params, PathParam};
use crate::limit::{Kind, target_of};

type ApiResult<T> = Result<Json<T>, ApiError>;

fn uuid(s: &str) -> Result<PersonUuid, ApiError> {
    Ok(PersonUuid::parse(s)?)
}

pub(crate) fn today(app: &App) -> time::Date {
    app.service.clock().now().date()
}

// ----- Health --------------------------------------------------------------------------------

/// Answers 200 when the store is reachable.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200), (status = 503)))]
pub async fn healthz(State(app): State<App>) -> (StatusCode, &'static str) {
    match app.service.store().ping().await {
        Ok(()) => (StatusCode::OK, "ok\n"),
        Err(e) => {
            tracing::error!(error = %e, "health check: store unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n")
        }
    }
}

/// Ready to take traffic, for a load balancer or an orchestrator: the store answers, and the
/// audit log's signer and the OpenID Connect provider are loaded. 503 names what is missing.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = wire::Readiness), (status = 503, body = wire::Readiness)))]
pub async fn readyz(State(app): State<App>) -> (StatusCode, Json<wire::Readiness>) {
    let store = match app.service.store().ping().await {
        Ok(()) => "ok",
        Err(e) => {
            tracing::error!(error = %e, "readiness: store unreachable");
            "unreachable"
        }
    };
    let loaded = |present: bool| if present { "ok" } else { "not loaded" };
    let readiness = wire::Readiness {
        store: store.into(),
        log_signer: loaded(app.log_key.is_some()).into(),
        openid_connect: loaded(app.oidc.is_some()).into(),
        ready: store == "ok" && app.log_key.is_some() && app.oidc.is_some(),
    };
    let status = if readiness.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(readiness))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "application/openmetrics-text")))]
pub async fn metrics_get(State(app): State<App>) -> ([(&'static str, &'static str); 1], String) {
    let started = std::time::Instant::now();
    if app.service.store().ping().await.is_ok() {
        app.metrics.observe_store(started.elapsed());
    }
    app.metrics.observe_writes(app.service.store().write_stats());
    app.metrics.observe_alerts(&app.service.alerts_raised());
    ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], app.metrics.render())
}

// ----- Sessions ------------------------------------------------------------------------------

/// Signs in with a recovery or interim credential, acting in one position.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions", request_body = wire::LoginRequest,
    responses((status = 201, body = wire::LoginResponse), (status = 401, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody)))]
pub async fn sessions_create(
    State(app): State<App>,
    Ctx(ctx): Ctx,
    Body(body): Body<wire::LoginRequest>,
) -> Result<(StatusCode, Json<wire::LoginResponse>), ApiError> {
    app.limit_target(Kind::Login, &target_of(body.credential.as_bytes()))?;
    let choice = body.assignment_id.map(|a| AssignmentId::parse(&a.to_string())).transpose()?;
    let outcome = app.service.login(&ctx, &Secret::new(body.credential), choice).await?;
    let response = wire::LoginResponse {
        token: outcome.token.expose().to_owned(),
        session_id: outcome.session_id,
        expires_at: format_time(outcome.expires_at),
        acting: c::acting_out(&outcome.actor),
        notice: outcome.notice,
    };
    Ok((StatusCode::CREATED, Json(response)))
}

/// This document: the API's OpenAPI 3.1 description.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "the OpenAPI document", content_type = "application/json")))]
pub async fn openapi_get() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi())
}

/// Who the caller is acting as.
#[utoipa::path(get, path = "/api/v1/me", tag = "sessions", responses((status = 200, body = wire::Acting)), security(("bearer" = [])))]
pub async fn me_get(auth: Authed) -> Json<wire::Acting> {
    Json(c::acting_out(&auth.actor))
}

/// Issues an interim sign-in credential to a person, until they have a card (RA Manager).
#[utoipa::path(post, path = "/api/v1/people/{uuid}/credentials", tag = "people", params(("uuid" = String, Path, description = "the person's 12-digit identifier")),
    responses((status = 201, body = wire::CredentialIssued)), security(("bearer" = [])))]
pub async fn credentials_create(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
) -> Result<(StatusCode, Json<wire::CredentialIssued>), ApiError> {
    let (secret, expires_at) = app.service.issue_credential(&auth.ctx, &auth.actor, &uuid(&id)?).await?;
    let body = wire::CredentialIssued { credential: secret.expose().to_owned(), expires_at: format_time(expires_at) };
    Ok((StatusCode::CREATED, Json(body)))
}

// ----- Organisations and catalogue -----------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Text in the code or name.
    pub q: Option<String>,
    pub limit: Option<u32>,
}

/// Finds organisations by code or name.
#[utoipa::path(get, path = "/api/v1/organisations", tag = "organisations", params(SearchParams),
    responses((status = 200, body = [wire::Organisation])), security(("bearer" = [])))]
pub async fn organisations_list(
    State(app): State<App>,
    _auth: Authed,
    Params(p): Params<SearchParams>,
) -> ApiResult<Vec<wire::Organisation>> {
    let orgs = app.service.find_organisations(p.q.as_deref(), p.limit.unwrap_or(100)).await?;
    Ok(Json(orgs.iter().map(c::organisation_out).collect()))
}

/// Creates an organisation under one the caller's position covers (RA Manager).
#[utoipa::path(post, path = "/api/v1/organisations", tag = "organisations", request_body = wire::Organisation,
    responses((status = 201, body = wire::Created), (status = 409, body = wire::ErrorBody)), security(("bearer" = [])))]
pub async fn organisations_create(
    State(app): State<App>,
    auth: Authed,
    Body(body): Body<wire::Organisation>,
) -> Result<(StatusCode, Json<wire::Created>), ApiError> {
    let org = c::organisation_in(&body)?;
    let id = org.ods_code.to_string();
    app.service.create_organisation(&auth.ctx, &auth.actor, org).await?;
    Ok((StatusCode::CREATED, Json(wire::Created { id })))
}

/// Imports organisations, all or none (RA Manager).
#[utoipa::path(post, path = "/api/v1/organisations/import", tag = "organisations", request_body = [wire::Organisation],
    responses((status = 201, body = wire::ImportSummary)), security(("bearer" = [])))]
pub async fn organisations_import(
    State(app): State<App>,
    auth: Authed,
    Body(body): Body<Vec<wire::Organisation>>,
) -> Result<(StatusCode, Json<wire::ImportSummary>), ApiError> {
    let orgs = body.iter().map(c::organisation_in).collect::<Result<Vec<_>, _>>()?;
    let created = app.service.import_organisations(&auth.ctx, &auth.actor, orgs).await?;
    Ok((StatusCode::CREATED, Json(wire::ImportSummary { created })))
}

/// One organisation and the organisations directly below it.
#[utoipa::path(get, path = "/api/v1/organisations/{ods_code}", tag = "organisations", params(("ods_code" = String, Path, description = "the organisation's ODS code")),
    responses((status = 200, body = wire::OrganisationDetail)), security(("bearer" = [])))]
pub async fn organisations_get(
    State(app): State<App>,
    _auth: Authed,
    PathParam(ods): PathParam<String>,
) -> ApiResult<wire::OrganisationDetail> {
    let (org, children) = app.service.organisation(&OdsCode::parse(&ods)?).await?;
    Ok(Json(wire::OrganisationDetail {
        organisation: c::organisation_out(&org),
        children: children.iter().map(c::organisation_out).collect(),
    }))
}

/// The positions of an organisation.
#[utoipa::path(get, path = "/api/v1/organisations/{ods_code}/positions", tag = "positions", params(("ods_code" = String, Path, description = "the organisation's ODS code")),
    responses((status = 200, body = [wire::Position])), security(("bearer" = [])))]
pub async fn organisation_positions_list(
    State(app): State<App>,
    _auth: Authed,
    PathParam(ods): PathParam<String>,
) -> ApiResult<Vec<wire::Position>> {
    let positions = app.service.positions_at(&OdsCode::parse(&ods)?).await?;
    Ok(Json(positions.iter().map(|p| c::position_out(p, app.service.catalogue())).collect()))
}

/// The national job roles.
#[utoipa::path(get, path = "/api/v1/job-roles", tag = "catalogue", responses((status = 200, body = [wire::JobRole])))]
pub async fn job_roles_list(State(app): State<App>) -> Json<Vec<wire::JobRole>> {
    let roles = app.service.catalogue().job_roles();
    Json(roles.map(|(code, name)| wire::JobRole { code: code.to_string(), name: name.to_owned() }).collect())
}

/// The activity codes and their hierarchy.
#[utoipa::path(get, path = "/api/v1/activities", tag = "catalogue", responses((status = 200, body = [wire::Activity])))]
pub async fn activities_list(State(app): State<App>) -> Json<Vec<wire::Activity>> {
    let activities = app.service.catalogue().activities();
    Json(
        activities
            .map(|a| wire::Activity {
                code: a.code.to_string(),
                name: a.name.clone(),
                parent: a.parent.as_ref().map(ToString::to_string),
            })
            .collect(),
    )
}

// ----- Positions -----------------------------------------------------------------------------

/// Creates a position, recording how it was approved (RA Manager, RA Agent (Advanced)).
#[utoipa::path(post, path = "/api/v1/positions", tag = "positions", request_body = wire::NewPosition,
    responses((status = 201, body = wire::Created)), security(("bearer" = [])))]
pub async fn positions_create(
    State(app): State<App>,
    auth: Authed,
    Body(body): Body<wire::NewPosition>,
) -> Result<(StatusCode, Json<wire::Created>), ApiError> {
    let id = app.service.create_position(&auth.ctx, &auth.actor, c::position_in(&body)?).await?;
    Ok((StatusCode::CREATED, Json(wire::Created { id: id.to_string() })))
}

#[utoipa::path(get, path = "/api/v1/positions/{id}", tag = "positions", params(("id" = i64, Path, description = "the record's number")),
    responses((status = 200, body = wire::Position)), security(("bearer" = [])))]
pub async fn positions_get(
    State(app): State<App>,
    _auth: Authed,
    PathParam(id): PathParam<String>,
) -> ApiResult<wire::Position> {
    let position = app.service.position(PositionId::parse(&id)?).await?;
    Ok(Json(c::position_out(&position, app.service.catalogue())))
}

/// Marks a position assignable (or not) by the organisation's sponsors.
#[utoipa::path(put, path = "/api/v1/positions/{id}/assignable", tag = "positions", params(("id" = i64, Path, description = "the record's number")), request_body = wire::SetAssignable,
    responses((status = 204)), security(("bearer" = [])))]
pub async fn positions_set_assignable(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
    Body(body): Body<wire::SetAssignable>,
) -> Result<StatusCode, ApiError> {
    let id = PositionId::parse(&id)?;
    app.service.set_position_assignable(&auth.ctx, &auth.actor, id, body.assignable_by_sponsors).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- Registrations -------------------------------------------------------------------------

/// A sponsor pre-registers a new member of staff.
#[utoipa::path(post, path = "/api/v1/registrations", tag = "registrations", request_body = wire::NewRegistration,
    responses((status = 201, body = wire::Created), (status = 409, body = wire::ErrorBody)), security(("bearer" = [])))]
pub async fn registrations_create(
    State(app): State<App>,
    auth: Authed,
    Body(body): Body<wire::NewRegistration>,
) -> Result<(StatusCode, Json<wire::Created>), ApiError> {
    let id = app.service.pre_register(&auth.ctx, &auth.actor, c::registration_in(&body)?).await?;
    Ok((StatusCode::CREATED, Json(wire::Created { id: id.to_string() })))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PendingParams {
    /// Only pending ones (default true).
    pub pending: Option<bool>,
}

/// Registrations at the caller's organisation and below.
#[utoipa::path(get, path = "/api/v1/registrations", tag = "registrations", params(PendingParams),
    responses((status = 200, body = [wire::Registration])), security(("bearer" = [])))]
pub async fn registrations_list(
    State(app): State<App>,
    auth: Authed,
    Params(p): Params<PendingParams>,
) -> ApiResult<Vec<wire::Registration>> {
    let list = app.service.registrations(&auth.ctx, &auth.actor, p.pending.unwrap_or(true)).await?;
    Ok(Json(list.iter().map(c::registration_out).collect()))
}

/// The RA verifies identity face to face and creates the profile.
#[utoipa::path(post, path = "/api/v1/registrations/{id}/verify", tag = "registrations", params(("id" = i64, Path, description = "the record's number")), request_body = wire::VerifyIdentity,
    responses((status = 201, body = wire::PersonCreated)), security(("bearer" = [])))]
pub async fn registrations_verify(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
    Body(body): Body<wire::VerifyIdentity>,
) -> Result<(StatusCode, Json<wire::PersonCreated>), ApiError> {
    let id = RegistrationId::parse(&id)?;
    let evidence = c::evidence_in(&body.documents)?;
    let uuid = app.service.verify_registration(&auth.ctx, &auth.actor, id, evidence).await?;
    Ok((StatusCode::CREATED, Json(wire::PersonCreated { uuid: uuid.to_string() })))
}

#[utoipa::path(post, path = "/api/v1/registrations/{id}/reject", tag = "registrations", params(("id" = i64, Path, description = "the record's number")), request_body = wire::Reason,
    responses((status = 204)), security(("bearer" = [])))]
pub async fn registrations_reject(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
    Body(body): Body<wire::Reason>,
) -> Result<StatusCode, ApiError> {
    let reason = parse_note("reason", &body.reason, true)?;
    app.service.reject_registration(&auth.ctx, &auth.actor, RegistrationId::parse(&id)?, reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- People --------------------------------------------------------------------------------

/// The RA creates a profile directly after a face-to-face identity check.
#[utoipa::path(post, path = "/api/v1/people", tag = "people", request_body = wire::NewPerson,
    responses((status = 201, body = wire::PersonCreated), (status = 409, body = wire::ErrorBody)), security(("bearer" = [])))]
pub async fn people_create(
    State(app): State<App>,
    auth: Authed,
    Body(body): Body<wire::NewPerson>,
) -> Result<(StatusCode, Json<wire::PersonCreated>), ApiError> {
    let uuid = app.service.create_person(&auth.ctx, &auth.actor, c::person_in(&body)?).await?;
    Ok((StatusCode::CREATED, Json(wire::PersonCreated { uuid: uuid.to_string() })))
}

/// Imports people verified by a previous RA system, each with a position (RA Manager).
#[utoipa::path(post, path = "/api/v1/people/import", tag = "people", request_body = [wire::ImportPerson],
    responses((status = 201, body = [wire::PersonCreated])), security(("bearer" = [])))]
pub async fn people_import(
    State(app): State<App>,
    auth: Authed,
    Body(body): Body<Vec<wire::ImportPerson>>,
) -> Result<(StatusCode, Json<Vec<wire::PersonCreated>>), ApiError> {
    let people = body.iter().map(c::import_person_in).collect::<Result<Vec<_>, _>>()?;
    let created = app.service.import_people(&auth.ctx, &auth.actor, people).await?;
    Ok((StatusCode::CREATED, Json(created.iter().map(|u| wire::PersonCreated { uuid: u.to_string() }).collect())))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PeopleParams {
    /// The start of the family name.
    pub family_name: String,
    pub limit: Option<u32>,
}

/// Finds people in the caller's scope by the start of their family name.
#[utoipa::path(get, path = "/api/v1/people", tag = "people", params(PeopleParams),
    responses((status = 200, body = [wire::PersonSummary])), security(("bearer" = [])))]
pub async fn people_list(
    State(app): State<App>,
    auth: Authed,
    Params(p): Params<PeopleParams>,
) -> ApiResult<Vec<wire::PersonSummary>> {
    if p.family_name.trim().is_empty() {
        return Err(careid_domain::ids::InvalidInput::new("family_name", "give at least one letter").into());
    }
    let people = app.service.find_people(&auth.actor, p.family_name.trim(), p.limit.unwrap_or(50)).await?;
    Ok(Json(people.iter().map(c::person_summary_out).collect()))
}

/// A profile: its positions for anyone signed in; date of birth, NI number, contact details
/// and identity checks for the person and the RA in scope, each such read audited.
#[utoipa::path(get, path = "/api/v1/people/{uuid}", tag = "people", params(("uuid" = String, Path, description = "the person's 12-digit identifier")),
    responses((status = 200, body = wire::Person)), security(("bearer" = [])))]
pub async fn people_get(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
) -> ApiResult<wire::Person> {
    let profile = app.service.person_profile(&auth.ctx, &auth.actor, &uuid(&id)?).await?;
    Ok(Json(c::profile_out(&profile, today(&app))))
}

/// Records a change of name after a face-to-face check with proof.
#[utoipa::path(post, path = "/api/v1/people/{uuid}/name", tag = "people", params(("uuid" = String, Path, description = "the person's 12-digit identifier")), request_body = wire::ChangeName,
    responses((status = 204)), security(("bearer" = [])))]
pub async fn people_change_name(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
    Body(body): Body<wire::ChangeName>,
) -> Result<StatusCode, ApiError> {
    let given = NamePart::parse("given_name", &body.given_name)?;
    let family = NamePart::parse("family_name", &body.family_name)?;
    let documents = c::documents_in(&body.documents)?;
    app.service.change_name(&auth.ctx, &auth.actor, &uuid(&id)?, given, family, documents).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes contact details: the person themselves, or the RA.
#[utoipa::path(put, path = "/api/v1/people/{uuid}/contact", tag = "people", params(("uuid" = String, Path, description = "the person's 12-digit identifier")), request_body = wire::ContactDetails,
    responses((status = 204)), security(("bearer" = [])))]
pub async fn people_change_contact(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
    Body(body): Body<wire::ContactDetails>,
) -> Result<StatusCode, ApiError> {
    app.service.change_contact(&auth.ctx, &auth.actor, &uuid(&id)?, c::contact_in(&body)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Corrects title, date of birth or NI number (names change through `/name`).
#[utoipa::path(put, path = "/api/v1/people/{uuid}/details", tag = "people", params(("uuid" = String, Path, description = "the person's 12-digit identifier")), request_body = wire::PersonalDetails,
    responses((status = 204)), security(("bearer" = [])))]
pub async fn people_correct_details(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
    Body(body): Body<wire::PersonalDetails>,
) -> Result<StatusCode, ApiError> {
    app.service.correct_details(&auth.ctx, &auth.actor, &uuid(&id)?, c::details_in(&body)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Closes a profile; from a sponsor, this becomes a request to the RA.
#[utoipa::path(post, path = "/api/v1/people/{uuid}/close", tag = "people", params(("uuid" = String, Path, description = "the person's 12-digit identifier")), request_body = wire::Reason,
    responses((status = 200, body = wire::CloseOutcome)), security(("bearer" = [])))]
pub async fn people_close(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
    Body(body): Body<wire::Reason>,
) -> ApiResult<wire::CloseOutcome> {
    let reason = parse_note("reason", &body.reason, true)?;
    let request = app.service.close_profile(&auth.ctx, &auth.actor, &uuid(&id)?, reason).await?;
    Ok(Json(wire::CloseOutcome { closed: request.is_none(), request_id: request.map(|r| r.0) }))
}

#[utoipa::path(post, path = "/api/v1/people/{uuid}/reopen", tag = "people", params(("uuid" = String, Path, description = "the person's 12-digit identifier")), responses((status = 204)), security(("bearer" = [])))]
pub async fn people_reopen(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
) -> Result<StatusCode, ApiError> {
    app.service.reopen_profile(&auth.ctx, &auth.actor, &uuid(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A leaver: removes an organisation (and those below it) from the profile.
#[utoipa::path(post, path = "/api/v1/people/{uuid}/leave", tag = "people", params(("uuid" = String, Path, description = "the person's 12-digit identifier")), request_body = wire::LeaveOrganisation,
    responses((status = 200, body = wire::LeaveOutcome)), security(("bearer" = [])))]
pub async fn people_leave(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
    Body(body): Body<wire::LeaveOrganisation>,
) -> ApiResult<wire::LeaveOutcome> {
    let org = OdsCode::parse(&body.org)?;
    let ended = app.service.remove_from_organisation(&auth.ctx, &auth.actor, &uuid(&id)?, &org).await?;
    Ok(Json(wire::LeaveOutcome { assignments_ended: ended }))
}

// ----- Assignments and requests --------------------------------------------------------------

/// Assigns a position: the RA any in scope, a sponsor those marked assignable.
#[utoipa::path(post, path = "/api/v1/assignments", tag = "assignments", request_body = wire::NewAssignment,
    responses((status = 201, body = wire::Created), (status = 403, body = wire::ErrorBody)), security(("bearer" = [])))]
pub async fn assignments_create(
    State(app): State<App>,
    auth: Authed,
    Body(body): Body<wire::NewAssignment>,
) -> Result<(StatusCode, Json<wire::Created>), ApiError> {
    let start = c::date_or("start", body.start.as_deref(), today(&app))?;
    let end = body.end.as_deref().map(|e| careid_domain::ids::parse_date("end", e)).transpose()?;
    let position = PositionId::parse(&body.position.to_string())?;
    let id = app.service.assign_position(&auth.ctx, &auth.actor, &uuid(&body.person)?, position, start, end).await?;
    Ok((StatusCode::CREATED, Json(wire::Created { id: id.to_string() })))
}

/// Ends an assignment early; it stays visible as removed.
#[utoipa::path(post, path = "/api/v1/assignments/{id}/remove", tag = "assignments", params(("id" = i64, Path, description = "the record's number")), request_body = wire::Reason,
    responses((status = 204)), security(("bearer" = [])))]
pub async fn assignments_remove(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
    Body(body): Body<wire::Reason>,
) -> Result<StatusCode, ApiError> {
    let reason = parse_note("reason", &body.reason, true)?;
    app.service.remove_assignment(&auth.ctx, &auth.actor, AssignmentId::parse(&id)?, reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A sponsor asks the RA to assign a position.
#[utoipa::path(post, path = "/api/v1/requests", tag = "requests", request_body = wire::NewAssignment,
    responses((status = 201, body = wire::Created)), security(("bearer" = [])))]
pub async fn requests_create(
    State(app): State<App>,
    auth: Authed,
    Body(body): Body<wire::NewAssignment>,
) -> Result<(StatusCode, Json<wire::Created>), ApiError> {
    let start = c::date_or("start", body.start.as_deref(), today(&app))?;
    let end = body.end.as_deref().map(|e| careid_domain::ids::parse_date("end", e)).transpose()?;
    let position = PositionId::parse(&body.position.to_string())?;
    let note = parse_note("note", &body.note, false)?;
    let person = uuid(&body.person)?;
    let terms = careid_service::AssignmentTerms { position, start, end };
    let id = app.service.request_position(&auth.ctx, &auth.actor, &person, terms, note).await?;
    Ok((StatusCode::CREATED, Json(wire::Created { id: id.to_string() })))
}

/// Sponsor requests at the caller's organisation and below.
#[utoipa::path(get, path = "/api/v1/requests", tag = "requests", params(PendingParams),
    responses((status = 200, body = [wire::Request])), security(("bearer" = [])))]
pub async fn requests_list(
    State(app): State<App>,
    auth: Authed,
    Params(p): Params<PendingParams>,
) -> ApiResult<Vec<wire::Request>> {
    let list = app.service.requests(&auth.ctx, &auth.actor, p.pending.unwrap_or(true)).await?;
    Ok(Json(list.iter().map(c::request_out).collect()))
}

/// Grants a request and carries it out (RA; never the requester).
#[utoipa::path(post, path = "/api/v1/requests/{id}/grant", tag = "requests", params(("id" = i64, Path, description = "the record's number")), responses((status = 204)), security(("bearer" = [])))]
pub async fn requests_grant(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
) -> Result<StatusCode, ApiError> {
    app.service.grant_request(&auth.ctx, &auth.actor, RequestId::parse(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/requests/{id}/reject", tag = "requests", params(("id" = i64, Path, description = "the record's number")), request_body = wire::Reason,
    responses((status = 204)), security(("bearer" = [])))]
pub async fn requests_reject(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
    Body(body): Body<wire::Reason>,
) -> Result<StatusCode, ApiError> {
    let reason = parse_note("reason", &body.reason, true)?;
    app.service.reject_request(&auth.ctx, &auth.actor, RequestId::parse(&id)?, reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- Audit ---------------------------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Records where this person acted or was the subject.
    pub person: Option<String>,
    /// Records about this organisation or below it (default: the caller's).
    pub org: Option<String>,
    pub action: Option<String>,
    /// Records of the sessions this card (its id) logged in.
    pub card: Option<i64>,
    /// RFC 3339.
    pub since: Option<String>,
    /// RFC 3339.
    pub until: Option<String>,
    /// Records before this sequence number (paging).
    pub before: Option<u64>,
    pub limit: Option<u32>,
}

pub(crate) fn audit_query(p: &AuditParams) -> Result<ReadAudit, ApiError> {
    Ok(ReadAudit {
        person: p.person.as_deref().map(uuid).transpose()?,
        org: p.org.as_deref().map(OdsCode::parse).transpose()?,
        action: p.action.clone(),
        card: p.card,
        since: p.since.as_deref().map(|s| c::time_param("since", s)).transpose()?,
        until: p.until.as_deref().map(|s| c::time_param("until", s)).transpose()?,
        before_seq: p.before,
        limit: p.limit.unwrap_or(100),
    })
}

/// Reads audit records in the caller's scope (RA Manager, privacy officer, Caldicott Guardian).
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = wire::AuditPage)), security(("bearer" = [])))]
pub async fn audit_list(
    State(app): State<App>,
    auth: Authed,
    Params(p): Params<AuditParams>,
) -> ApiResult<wire::AuditPage> {
    let page = app.service.read_audit(&auth.ctx, &auth.actor, audit_query(&p)?).await?;
    Ok(Json(wire::AuditPage {
        records: page.records.iter().map(c::audit_out).collect(),
        next_before: page.next_before_seq,
    }))
}

/// The caller's own trail: records where they acted or were the subject.
#[utoipa::path(get, path = "/api/v1/me/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = wire::AuditPage)), security(("bearer" = [])))]
pub async fn me_audit_list(
    State(app): State<App>,
    auth: Authed,
    Params(p): Params<AuditParams>,
) -> ApiResult<wire::AuditPage> {
    let mut query = audit_query(&p)?;
    query.person = Some(auth.actor.person.clone());
    query.org = None;
    let page = app.service.read_audit(&auth.ctx, &auth.actor, query).await?;
    Ok(Json(wire::AuditPage {
        records: page.records.iter().map(c::audit_out).collect(),
        next_before: page.next_before_seq,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// The organisation (default: the caller's); the report covers it and everything below it.
    pub org: Option<String>,
    /// For `card-costs`: what one card costs, in pence (default: the deployment's setting).
    pub unit_cost_pence: Option<u64>,
    /// `json` (the default) or `csv` (a header line of the columns, then a line a row).
    pub format: Option<String>,
}

/// One of the RA Manager's reports: `lost-cards`, `duplicate-live-cards`, `leavers`,
/// `expiring-certificates`, `dormant`, `coverage`, `card-costs`.
#[utoipa::path(get, path = "/api/v1/reports/{name}", tag = "reports",
    params(("name" = String, Path, description = "the report"), ReportParams),
    responses((status = 200, description = "the report", content((wire::Report = "application/json"),
        (String = "text/csv")))), security(("bearer" = [])))]
pub async fn reports_get(
    State(app): State<App>,
    auth: Authed,
    PathParam(name): PathParam<String>,
    Params(p): Params<ReportParams>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let csv = match p.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(careid_domain::ids::InvalidInput::new("format", "must be json or csv").into()),
    };
    let name = careid_domain::report::ReportName::parse(&name)?;
    let org = p.org.as_deref().map(OdsCode::parse).transpose()?;
    let org_code = org.clone().unwrap_or_else(|| auth.actor.org.clone());
    let table = app.service.report(&auth.ctx, &auth.actor, name, org, p.unit_cost_pence).await?;
    if csv {
        let mut out = csv::Writer::from_writer(Vec::new());
        let written = std::iter::once(table.columns.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>())
            .chain(table.rows)
            .try_for_each(|row| out.write_record(&row));
        let bytes = written.ok().and_then(|()| out.into_inner().ok()).unwrap_or_default();
        let disposition = format!("attachment; filename=\"{}-{org_code}.csv\"", name.code());
        let headers = [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ];
        return Ok((headers, bytes).into_response());
    }
    Ok(Json(wire::Report {
        name: name.code().to_owned(),
        org: org_code.to_string(),
        generated_at: format_time(app.service.clock().now()),
        columns: table.columns.iter().map(|c| (*c).to_owned()).collect(),
        rows: table.rows,
    })
    .into_response())
}

/// Records an RA spot check of an organisation (a senior RA in scope).
#[utoipa::path(post, path = "/api/v1/organisations/{ods_code}/spot-checks", tag = "reports",
    params(("ods_code" = String, Path, description = "the organisation's ODS code")), request_body = wire::NewSpotCheck,
    responses((status = 201, body = wire::SpotCheckRecorded)), security(("bearer" = [])))]
pub async fn spot_checks_create(
    State(app): State<App>,
    auth: Authed,
    PathParam(ods): PathParam<String>,
    Body(body): Body<wire::NewSpotCheck>,
) -> Result<(StatusCode, Json<wire::SpotCheckRecorded>), ApiError> {
    let org = OdsCode::parse(&ods)?;
    let visited_on = careid_domain::ids::parse_date("visited_on", &body.visited_on)?;
    let id = app.service.record_spot_check(&auth.ctx, &auth.actor, &org, visited_on, &body.findings).await?;
    Ok((StatusCode::CREATED, Json(wire::SpotCheckRecorded { id })))
}
