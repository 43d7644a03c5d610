//! Patient-record accesses reported by clinical applications (`/api/v1/access-events`, the
//! application's client credentials), read back by the privacy officer
//! (`/api/v1/patient-access`), and the audit log exported as HL7 FHIR R4 `AuditEvent`
//! resources (`/api/v1/audit/fhir`, NDJSON).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use careid_audit::format_time;
use careid_domain::audit::AuditRecord;
use careid_domain::ids::{OdsCode, PersonUuid};
use careid_domain::patient::{NhsNumber, PatientAccess};
use careid_proto as wire;
use careid_service::{AccessReport, AlertQuery, ReadPatientAccess, ReportOutcome};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

use crate::error::ApiError;
use crate::extract::{Authed, Body, Ctx, Params, PathParam};
use crate::oidc::{OAuthFailure, client_credentials};
use crate::routes::{AuditParams, audit_query};
use crate::{App, fhir};

/// An application reports what its users did with patient records, up to 5,000 events a
/// request, authenticated by its client credentials (HTTP Basic). Each event is accepted or
/// refused on its own, with the field at fault.
#[utoipa::path(post, path = "/api/v1/access-events", tag = "patient access", request_body = wire::AccessEvents,
    responses((status = 200, body = wire::AccessEventsResult), (status = 400), (status = 401)))]
pub async fn access_events(
    State(app): State<App>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // The application is authenticated before its body is read: an unknown caller gets 401
    // and makes careid parse nothing.
    let credentials = match client_credentials(&headers, &HashMap::new()) {
        Ok(credentials) => credentials,
        Err(e) => return OAuthFailure(e).into_response(),
    };
    if let Err(e) = app.service.check_application(&credentials).await {
        return OAuthFailure(e).into_response();
    }
    let body: wire::AccessEvents = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => return ApiError::malformed(format!("the body is not the JSON expected: {e}")).into_response(),
    };
    let result = async {
        let oidc = app.oidc.as_deref();
        let reports: Vec<AccessReport> = body
            .events
            .into_iter()
            .map(|e| AccessReport {
                token_id: oidc.and_then(|o| o.token_id(&e.access_token)),
                patient: e.patient,
                action: e.action,
                relationship: e.relationship,
                at: e.at,
            })
            .collect();
        app.service.report_patient_access(&ctx, &credentials, &reports).await.map_err(OAuthFailure)
    }
    .await;
    match result {
        Ok(outcomes) => {
            let results: Vec<wire::AccessEventResult> = outcomes
                .iter()
                .enumerate()
                .map(|(index, outcome)| match outcome {
                    ReportOutcome::Accepted { seq, alert } => wire::AccessEventResult {
                        index,
                        status: "accepted".into(),
                        seq: Some(*seq),
                        alert: *alert,
                        field: None,
                        message: None,
                    },
                    ReportOutcome::Refused(invalid) => wire::AccessEventResult {
                        index,
                        status: "refused".into(),
                        seq: None,
                        alert: false,
                        field: Some(invalid.field.to_owned()),
                        message: Some(format!("{} {}", invalid.field, invalid.rule)),
                    },
                })
                .collect();
            let accepted = results.iter().filter(|r| r.seq.is_some()).count();
            Json(wire::AccessEventsResult { accepted, refused: results.len() - accepted, results }).into_response()
        }
        Err(failure) => failure.into_response(),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccessParams {
    /// Accesses to this patient's record (NHS number).
    pub patient: Option<String>,
    /// Accesses by this person.
    pub person: Option<String>,
    /// Accesses for this organisation or below it (default: the caller's).
    pub org: Option<String>,
    /// Only self-claimed and emergency accesses.
    pub alerts: Option<bool>,
    /// Records before this sequence number (paging).
    pub before: Option<u64>,
    pub limit: Option<u32>,
}

pub(crate) fn access_out(a: &PatientAccess) -> wire::PatientAccess {
    wire::PatientAccess {
        seq: a.seq,
        patient: a.patient.to_string(),
        person: a.person.to_string(),
        org: a.org.to_string(),
        client: a.client.to_string(),
        action: a.action.code().into(),
        relationship: a.relationship.code().into(),
        accessed_at: format_time(a.accessed_at),
        alert: a.alert.clone(),
    }
}

/// Reported accesses, by patient, person or alerts only (privacy officer, Caldicott Guardian,
/// RA Manager, in scope). The query is audited.
#[utoipa::path(get, path = "/api/v1/patient-access", tag = "patient access", params(AccessParams),
    responses((status = 200, body = Vec<wire::PatientAccess>), (status = 403, body = wire::ErrorBody)), security(("bearer" = [])))]
pub async fn patient_access_list(
    State(app): State<App>,
    auth: Authed,
    Params(p): Params<AccessParams>,
) -> Result<Json<Vec<wire::PatientAccess>>, ApiError> {
    let org = p.org.as_deref().map(OdsCode::parse).transpose()?;
    let patient = p.patient.as_deref().map(NhsNumber::parse).transpose()?;
    let person = p.person.as_deref().map(PersonUuid::parse).transpose()?;
    let query = ReadPatientAccess {
        org,
        patient,
        person,
        alerts_only: p.alerts.unwrap_or(false),
        before_seq: p.before,
        limit: p.limit.unwrap_or(100),
    };
    let accesses = app.service.patient_accesses(&auth.ctx, &auth.actor, query).await?;
    Ok(Json(accesses.iter().map(access_out).collect()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertParams {
    /// Alerts of this organisation or below it (default: the caller's).
    pub org: Option<String>,
    /// Low alerts (context) too, not only the queue's medium and high ones.
    pub low: Option<bool>,
    /// Alerts recorded before this sequence number (paging).
    pub before: Option<u64>,
    pub limit: Option<u32>,
}

/// The misuse alert queue, newest first (privacy officer, Caldicott Guardian, RA, in scope).
/// The read is audited.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "patient access", params(AlertParams),
    responses((status = 200, body = Vec<wire::Alert>), (status = 403, body = wire::ErrorBody)), security(("bearer" = [])))]
pub async fn alerts_list(
    State(app): State<App>,
    auth: Authed,
    Params(p): Params<AlertParams>,
) -> Result<Json<Vec<wire::Alert>>, ApiError> {
    let query = AlertQuery {
        org: p.org.as_deref().map(OdsCode::parse).transpose()?,
        include_low: p.low.unwrap_or(false),
        before_seq: p.before,
        limit: p.limit.unwrap_or(100),
    };
    let alerts = app.service.alert_queue(&auth.ctx, &auth.actor, &query).await?;
    Ok(Json(
        alerts
            .into_iter()
            .map(|a| wire::Alert {
                seq: a.seq,
                kind: a.kind,
                severity: a.severity,
                concerns: a.concerns,
                org: a.org,
                workstation: a.workstation,
                at: a.at,
                explanation: a.explanation,
                evidence: a.evidence,
            })
            .collect(),
    ))
}

/// Flags a patient at an organisation (privacy officer, Caldicott Guardian, senior RA in
/// scope): an access to the record without a registration or referral then raises a high
/// alert at once. The log names the patient by pseudonym.
#[utoipa::path(post, path = "/api/v1/organisations/{ods_code}/flagged-patients", tag = "patient access",
    params(("ods_code" = String, Path, description = "the organisation's ODS code")), request_body = wire::PatientFlag,
    responses((status = 200, body = wire::PatientFlagged), (status = 403, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody)),
    security(("bearer" = [])))]
pub async fn flagged_patients_add(
    State(app): State<App>,
    auth: Authed,
    PathParam(ods): PathParam<String>,
    Body(body): Body<wire::PatientFlag>,
) -> Result<Json<wire::PatientFlagged>, ApiError> {
    let org = OdsCode::parse(&ods)?;
    let patient = NhsNumber::parse(&body.nhs_number)?;
    let changed = app.service.flag_patient(&auth.ctx, &auth.actor, &org, &patient, &body.reason).await?;
    Ok(Json(wire::PatientFlagged { changed }))
}

/// Lifts a patient's flag at an organisation (the NHS number in the body, not the URL).
#[utoipa::path(post, path = "/api/v1/organisations/{ods_code}/flagged-patients/lift", tag = "patient access",
    params(("ods_code" = String, Path, description = "the organisation's ODS code")), request_body = wire::PatientFlag,
    responses((status = 200, body = wire::PatientFlagged), (status = 403, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody)),
    security(("bearer" = [])))]
pub async fn flagged_patients_lift(
    State(app): State<App>,
    auth: Authed,
    PathParam(ods): PathParam<String>,
    Body(body): Body<wire::PatientFlag>,
) -> Result<Json<wire::PatientFlagged>, ApiError> {
    let org = OdsCode::parse(&ods)?;
    let patient = NhsNumber::parse(&body.nhs_number)?;
    let changed = app.service.unflag_patient(&auth.ctx, &auth.actor, &org, &patient).await?;
    Ok(Json(wire::PatientFlagged { changed }))
}

/// The patients flagged at an organisation and those under it. The read is audited.
#[utoipa::path(get, path = "/api/v1/organisations/{ods_code}/flagged-patients", tag = "patient access",
    params(("ods_code" = String, Path, description = "the organisation's ODS code")),
    responses((status = 200, body = Vec<wire::FlaggedPatient>), (status = 403, body = wire::ErrorBody)), security(("bearer" = [])))]
pub async fn flagged_patients_list(
    State(app): State<App>,
    auth: Authed,
    PathParam(ods): PathParam<String>,
) -> Result<Json<Vec<wire::FlaggedPatient>>, ApiError> {
    let org = OdsCode::parse(&ods)?;
    let flagged = app.service.flagged_patients(&auth.ctx, &auth.actor, &org).await?;
    Ok(Json(
        flagged
            .into_iter()
            .map(|f| wire::FlaggedPatient {
                org: f.org.to_string(),
                nhs_number: f.patient.to_string(),
                reason: f.reason,
                flagged_by: f.flagged_by.to_string(),
                flagged_at: format_time(f.flagged_at),
            })
            .collect(),
    ))
}

/// The audit log as HL7 FHIR R4 `AuditEvent` resources: by default one JSON resource a line
/// (NDJSON, for bulk export), or with `Accept: application/fhir+json` one searchset `Bundle`
/// for the page, with a `next` link. The same query, scope and paging as `/api/v1/audit`
/// (pass `before` from the last resource's `id` for the next page).
#[utoipa::path(get, path = "/api/v1/audit/fhir", tag = "audit", params(AuditParams),
    responses((status = 200, description = "AuditEvent resources: NDJSON, or a searchset Bundle with `_format=json`",
        content((String = "application/fhir+ndjson"), (String = "application/fhir+json")))),
    security(("bearer" = [])))]
pub async fn audit_fhir(
    State(app): State<App>,
    auth: Authed,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
    Params(p): Params<AuditParams>,
) -> Result<Response, ApiError> {
    let (page, patients) = app.service.audit_with_patients(&auth.ctx, &auth.actor, audit_query(&p)?).await?;
    let resources = page.records.iter().map(|record| resource(record, patients.get(&record.seq)));
    let wants_bundle = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.split(',').any(|t| t.trim().starts_with("application/fhir+json")));
    if wants_bundle {
        let query = raw_query.unwrap_or_default();
        let url = |before: Option<u64>| {
            let mut kept: Vec<&str> = query.split('&').filter(|p| !p.is_empty() && !p.starts_with("before=")).collect();
            let before = before.map(|b| format!("before={b}"));
            kept.extend(before.as_deref());
            format!("/api/v1/audit/fhir?{}", kept.join("&"))
        };
        let bundle = fhir::search_bundle(
            resources.collect(),
            &format!("/api/v1/audit/fhir?{query}"),
            page.next_before_seq.map(|b| url(Some(b))).as_deref(),
        );
        return Ok(([(header::CONTENT_TYPE, "application/fhir+json")], bundle.to_string()).into_response());
    }
    let mut body = String::new();
    for resource in resources {
        body.push_str(&format!("{resource}\n"));
    }
    Ok(([(header::CONTENT_TYPE, "application/fhir+ndjson")], body).into_response())
}

/// A record as an `AuditEvent`, or an `OperationOutcome` saying it could not be read.
fn resource(record: &AuditRecord, patient: Option<&NhsNumber>) -> Value {
    fhir::audit_event(record, patient).unwrap_or_else(|error| {
        json!({ "resourceType": "OperationOutcome", "issue": [{ "severity": "error", "code": "exception",
            "diagnostics": format!("record {}: {error}", record.seq) }] })
    })
}
