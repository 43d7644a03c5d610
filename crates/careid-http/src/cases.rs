//! Misuse cases: anyone's report about anyone, and the queue, history, steps and export of
//! the cases for those who work them. The service decides who may; these only translate.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use careid_audit::format_time;
use careid_domain::case::{Case, CaseEntry};
use careid_domain::ids::{OdsCode, PersonUuid};
use careid_proto as wire;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::App;
use crate::error::ApiError;
use crate::extract::{Authed, Body, Params, PathParam};

pub(crate) fn case_out(c: &Case) -> wire::Case {
    wire::Case {
        id: c.id,
        source: c.source.code().into(),
        subject: c.subject.to_string(),
        reporter: c.reporter.as_ref().map(ToString::to_string),
        org: c.org.to_string(),
        owner: c.owner.as_ref().map(ToString::to_string),
        status: c.status.code().into(),
        summary: c.summary.clone(),
        opened_at: format_time(c.opened_at),
        closed_at: c.closed_at.map(format_time),
        outcome: c.outcome.map(|o| o.code().into()),
        incident: c.incident,
    }
}

pub(crate) fn entry_out(e: &CaseEntry) -> wire::CaseEntry {
    wire::CaseEntry {
        at: format_time(e.at),
        by: e.by.as_ref().map(ToString::to_string),
        kind: e.kind.code().into(),
        text: e.text.clone(),
        record: e.record,
    }
}

/// Reports suspected misuse by someone (anyone signed in, about anyone but themselves). The
/// case goes to the privacy officer, Caldicott Guardian and RA of the subject's organisation;
/// the subject never learns who reported.
#[utoipa::path(post, path = "/api/v1/cases", tag = "cases", request_body = wire::MisuseReport,
    responses((status = 201, body = wire::CaseOpened), (status = 403, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody)),
    security(("bearer" = [])))]
pub async fn cases_report(
    State(app): State<App>,
    auth: Authed,
    Body(body): Body<wire::MisuseReport>,
) -> Result<(StatusCode, Json<wire::CaseOpened>), ApiError> {
    let subject = PersonUuid::parse(&body.subject)?;
    let id = app.service.report_misuse(&auth.ctx, &auth.actor, &subject, &body.comment).await?;
    Ok((StatusCode::CREATED, Json(wire::CaseOpened { id })))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CaseParams {
    /// Cases of this organisation or below it (default: the caller's).
    pub org: Option<String>,
    /// Closed cases too.
    pub all: Option<bool>,
    pub limit: Option<u32>,
}

/// The cases of the organisations in scope, newest first (privacy officer, Caldicott
/// Guardian, senior RA); never those about the reader or reported by them. Audited.
#[utoipa::path(get, path = "/api/v1/cases", tag = "cases", params(CaseParams),
    responses((status = 200, body = Vec<wire::Case>), (status = 403, body = wire::ErrorBody)), security(("bearer" = [])))]
pub async fn cases_list(
    State(app): State<App>,
    auth: Authed,
    Params(p): Params<CaseParams>,
) -> Result<Json<Vec<wire::Case>>, ApiError> {
    let org = p.org.as_deref().map(OdsCode::parse).transpose()?;
    let open_only = !p.all.unwrap_or(false);
    let cases = app.service.cases(&auth.ctx, &auth.actor, org, open_only, p.limit.unwrap_or(100)).await?;
    Ok(Json(cases.iter().map(case_out).collect()))
}

/// One case with its history. Audited.
#[utoipa::path(get, path = "/api/v1/cases/{id}", tag = "cases", params(("id" = i64, Path, description = "the case")),
    responses((status = 200, body = wire::CaseDetail), (status = 403, body = wire::ErrorBody), (status = 404, body = wire::ErrorBody)),
    security(("bearer" = [])))]
pub async fn cases_get(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<i64>,
) -> Result<Json<wire::CaseDetail>, ApiError> {
    let view = app.service.case_view(&auth.ctx, &auth.actor, id).await?;
    Ok(Json(wire::CaseDetail { case: case_out(&view.case), entries: view.entries.iter().map(entry_out).collect() }))
}

/// Gives a case its owner.
#[utoipa::path(post, path = "/api/v1/cases/{id}/assign", tag = "cases", params(("id" = i64, Path, description = "the case")),
    request_body = wire::CaseAssign, responses((status = 204)), security(("bearer" = [])))]
pub async fn cases_assign(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<i64>,
    Body(body): Body<wire::CaseAssign>,
) -> Result<StatusCode, ApiError> {
    let owner = PersonUuid::parse(&body.owner)?;
    app.service.assign_case(&auth.ctx, &auth.actor, id, &owner).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Adds a note to a case.
#[utoipa::path(post, path = "/api/v1/cases/{id}/notes", tag = "cases", params(("id" = i64, Path, description = "the case")),
    request_body = wire::CaseNote, responses((status = 204)), security(("bearer" = [])))]
pub async fn cases_note(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<i64>,
    Body(body): Body<wire::CaseNote>,
) -> Result<StatusCode, ApiError> {
    app.service.note_case(&auth.ctx, &auth.actor, id, &body.note).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Links an audit record (one the caller may read) to a case as evidence.
#[utoipa::path(post, path = "/api/v1/cases/{id}/evidence", tag = "cases", params(("id" = i64, Path, description = "the case")),
    request_body = wire::CaseEvidence, responses((status = 204)), security(("bearer" = [])))]
pub async fn cases_evidence(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<i64>,
    Body(body): Body<wire::CaseEvidence>,
) -> Result<StatusCode, ApiError> {
    app.service.add_case_evidence(&auth.ctx, &auth.actor, id, body.record, &body.why).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Closes a case with its outcome (its owner only). A lost-card case closes the card's
/// investigation with it.
#[utoipa::path(post, path = "/api/v1/cases/{id}/close", tag = "cases", params(("id" = i64, Path, description = "the case")),
    request_body = wire::CaseClose, responses((status = 204)), security(("bearer" = [])))]
pub async fn cases_close(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<i64>,
    Body(body): Body<wire::CaseClose>,
) -> Result<StatusCode, ApiError> {
    app.service.close_case(&auth.ctx, &auth.actor, id, &body.outcome, &body.review).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A case's history for an employment tribunal, each record with its inclusion proof in the
/// signed checkpoint. Audited.
#[utoipa::path(get, path = "/api/v1/cases/{id}/export", tag = "cases", params(("id" = i64, Path, description = "the case")),
    responses((status = 200, body = wire::CaseExport), (status = 403, body = wire::ErrorBody), (status = 404, body = wire::ErrorBody)),
    security(("bearer" = [])))]
pub async fn cases_export(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<i64>,
) -> Result<Json<wire::CaseExport>, ApiError> {
    let export = app.service.export_case(&auth.ctx, &auth.actor, id).await?;
    let base64 = base64::engine::general_purpose::STANDARD;
    Ok(Json(wire::CaseExport {
        case: case_out(&export.view.case),
        entries: export.view.entries.iter().map(entry_out).collect(),
        checkpoint: export.checkpoint.as_ref().map(|c| c.note.clone()),
        tree_size: export.checkpoint.as_ref().map(|c| c.size),
        records: export
            .evidence
            .iter()
            .map(|e| wire::ExportedRecord {
                seq: e.record.seq,
                entry: base64.encode(&e.record.entry),
                proof: e.proof.as_ref().map(|p| p.iter().map(hex::encode).collect()),
            })
            .collect(),
    }))
}
