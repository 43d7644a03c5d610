//! The holder's proofs and "not me": a record's inclusion proof in a signed checkpoint, a flag
//! on a record that was not the holder, and the incidents those flags open.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use careid_audit::format_time;
use careid_domain::audit::MisuseIncident;
use careid_domain::ids::OdsCode;
use careid_proto as wire;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::App;
use crate::error::ApiError;
use crate::extract::{Authed, Body, Params, PathParam};

fn incident_out(i: &MisuseIncident) -> wire::MisuseIncident {
    wire::MisuseIncident {
        id: i.id,
        record: i.record,
        person: i.person.to_string(),
        org: i.org.as_ref().map(ToString::to_string),
        comment: i.comment.clone(),
        context: i.context.clone(),
        opened_at: format_time(i.opened_at),
    }
}

/// A record with its inclusion proof in the latest signed checkpoint (a record naming the
/// caller; the RA Manager, privacy officer and Caldicott Guardian: any in scope).
#[utoipa::path(get, path = "/api/v1/audit/{seq}/proof", tag = "audit", params(("seq" = u64, Path, description = "the audit record's position in the log")),
    responses((status = 200, body = wire::RecordProof), (status = 403, body = wire::ErrorBody), (status = 404, body = wire::ErrorBody)),
    security(("bearer" = [])))]
pub async fn audit_proof(
    State(app): State<App>,
    auth: Authed,
    PathParam(seq): PathParam<u64>,
) -> Result<Json<wire::RecordProof>, ApiError> {
    let proof = app.service.prove_audit_record(&auth.ctx, &auth.actor, seq).await?;
    let fields = careid_audit::decode(&proof.record.entry).map(|e| e.fields).unwrap_or_default();
    Ok(Json(wire::RecordProof {
        seq,
        entry: STANDARD.encode(&proof.record.entry),
        fields,
        leaf_hash: STANDARD.encode(proof.leaf_hash),
        tree_size: proof.tree_size,
        inclusion: proof.inclusion.iter().map(|h| STANDARD.encode(h)).collect(),
        checkpoint: proof.checkpoint,
    }))
}

/// "Not me": the caller says a record naming them as its actor was not them. Opens an
/// incident with the RA and the Caldicott Guardian of the organisation the record concerns.
#[utoipa::path(post, path = "/api/v1/audit/{seq}/not-me", tag = "audit", params(("seq" = u64, Path, description = "the audit record's position in the log")), request_body = wire::NotMeRequest,
    responses((status = 201, body = wire::MisuseIncident), (status = 403, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody),
        (status = 422, body = wire::ErrorBody)),
    security(("bearer" = [])))]
pub async fn audit_not_me(
    State(app): State<App>,
    auth: Authed,
    PathParam(seq): PathParam<u64>,
    Body(body): Body<wire::NotMeRequest>,
) -> Result<(StatusCode, Json<wire::MisuseIncident>), ApiError> {
    let incident = app.service.flag_not_me(&auth.ctx, &auth.actor, seq, &body.comment).await?;
    Ok((StatusCode::CREATED, Json(incident_out(&incident))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IncidentParams {
    /// Incidents of this organisation and below it (default: the caller's).
    pub org: Option<String>,
}

/// The "not me" incidents in the caller's scope (RA, privacy officer, Caldicott Guardian).
#[utoipa::path(get, path = "/api/v1/audit/incidents", tag = "audit", params(IncidentParams),
    responses((status = 200, body = Vec<wire::MisuseIncident>), (status = 403, body = wire::ErrorBody)), security(("bearer" = [])))]
pub async fn audit_incidents(
    State(app): State<App>,
    auth: Authed,
    Params(p): Params<IncidentParams>,
) -> Result<Json<Vec<wire::MisuseIncident>>, ApiError> {
    let org = p.org.as_deref().map(OdsCode::parse).transpose()?;
    let incidents = app.service.misuse_incidents(&auth.ctx, &auth.actor, org).await?;
    Ok(Json(incidents.iter().map(incident_out).collect()))
}
