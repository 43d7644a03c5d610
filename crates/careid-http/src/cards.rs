//! Card endpoints and the PKI's public files (`/pki/ca`, `/pki/root`, `/pki/crl`). Binary
//! values travel as base64; administrative secrets only sealed to a ceremony's one-time key.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use careid_audit::format_time;
use careid_domain::card::{CardRecord, CardSerial};
use careid_domain::ids::{InvalidInput, PersonUuid};
use careid_proto as wire;
use careid_service::{CardReport, Ceremony};

use crate::App;
use crate::error::ApiError;
use crate::extract::{Authed, Body, Ctx, PathParam};
use crate::limit::Kind;

pub(crate) fn base64_field(field: &'static str, value: &str) -> Result<Vec<u8>, ApiError> {
    STANDARD.decode(value.trim()).map_err(|_| InvalidInput::new(field, "must be base64").into())
}

fn card_id(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| InvalidInput::new("card_id", "must be a positive whole number").into())
}

fn der_response(content_type: &'static str, der: Vec<u8>) -> ([(&'static str, &'static str); 1], Vec<u8>) {
    ([("content-type", content_type)], der)
}

/// The issuing CA's certificate (PEM): what verifies card certificates.
#[utoipa::path(get, path = "/pki/ca", tag = "pki", responses((status = 200, content_type = "application/x-pem-file")))]
pub async fn pki_ca(State(app): State<App>) -> Result<([(&'static str, &'static str); 1], String), ApiError> {
    let der = app.service.issuing_certificate().map_err(ApiError::from)?;
    Ok(([("content-type", "application/x-pem-file")], careid_pki::pem("CERTIFICATE", &der)))
}

/// The root CA's certificate (PEM).
#[utoipa::path(get, path = "/pki/root", tag = "pki", responses((status = 200, content_type = "application/x-pem-file")))]
pub async fn pki_root(State(app): State<App>) -> Result<([(&'static str, &'static str); 1], String), ApiError> {
    let der = app.service.root_certificate().map_err(ApiError::from)?;
    Ok(([("content-type", "application/x-pem-file")], careid_pki::pem("CERTIFICATE", &der)))
}

/// The current CRL (DER), listing every revoked card certificate with its RFC 5280 reason.
#[utoipa::path(get, path = "/pki/crl", tag = "pki", responses((status = 200, content_type = "application/pkix-crl")))]
pub async fn pki_crl(State(app): State<App>) -> Result<([(&'static str, &'static str); 1], Vec<u8>), ApiError> {
    Ok(der_response("application/pkix-crl", app.service.current_crl().await?))
}

/// Starts issuing a card (RA, holder present).
#[utoipa::path(post, path = "/api/v1/cards", tag = "cards", request_body = wire::BeginCardIssue,
    responses((status = 201, body = wire::CardIssueStarted), (status = 409, body = wire::ErrorBody)), security(("bearer" = [])))]
pub async fn cards_create(
    State(app): State<App>,
    auth: Authed,
    Body(body): Body<wire::BeginCardIssue>,
) -> Result<(StatusCode, Json<wire::CardIssueStarted>), ApiError> {
    let person = PersonUuid::parse(&body.person)?;
    let serial = CardSerial::parse(&body.serial)?;
    let key = base64_field("ceremony_key", &body.ceremony_key)?;
    let (card_id, sealed) = app.service.begin_card_issue(&auth.ctx, &auth.actor, &person, serial, &key).await?;
    Ok((StatusCode::CREATED, Json(wire::CardIssueStarted { card_id, sealed_secret: STANDARD.encode(sealed) })))
}

/// Certifies the key the card generated; the certificate goes back onto the card.
#[utoipa::path(post, path = "/api/v1/cards/{id}/certify", tag = "cards", params(("id" = i64, Path, description = "the record's number")), request_body = wire::CertifyCard,
    responses((status = 200, body = wire::CardCertificateIssued)), security(("bearer" = [])))]
pub async fn cards_certify(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
    Body(body): Body<wire::CertifyCard>,
) -> Result<Json<wire::CardCertificateIssued>, ApiError> {
    let public_key = base64_field("public_key", &body.public_key)?;
    let der = app.service.certify_card(&auth.ctx, &auth.actor, card_id(&id)?, &public_key).await?;
    Ok(Json(wire::CardCertificateIssued { certificate: STANDARD.encode(der) }))
}

/// Authorises a card ceremony (first passcode, unlock, renew, repair): the secrets come back
/// sealed to the ceremony's key, and the holder alone types the passcode.
#[utoipa::path(post, path = "/api/v1/cards/{id}/ceremony", tag = "cards", params(("id" = i64, Path, description = "the record's number")), request_body = wire::StartCeremony,
    responses((status = 200, body = wire::CeremonySecrets)), security(("bearer" = [])))]
pub async fn cards_ceremony(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
    Body(body): Body<wire::StartCeremony>,
) -> Result<Json<wire::CeremonySecrets>, ApiError> {
    let ceremony = Ceremony::parse(&body.ceremony).ok_or_else(|| {
        ApiError::from(InvalidInput::new("ceremony", "must be first_passcode, unlock, renew or repair"))
    })?;
    let key = base64_field("ceremony_key", &body.ceremony_key)?;
    let sealed =
        app.service.release_administrator_secret(&auth.ctx, &auth.actor, card_id(&id)?, ceremony, &key).await?;
    Ok(Json(wire::CeremonySecrets { sealed_secrets: STANDARD.encode(sealed) }))
}

/// The ceremony succeeded: the card is active.
#[utoipa::path(post, path = "/api/v1/cards/{id}/ceremony/complete", tag = "cards", params(("id" = i64, Path, description = "the record's number")),
    responses((status = 200, body = wire::CardStateResponse)), security(("bearer" = [])))]
pub async fn cards_ceremony_complete(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
) -> Result<Json<wire::CardStateResponse>, ApiError> {
    let card_id = card_id(&id)?;
    let state = app.service.complete_ceremony(&auth.ctx, &auth.actor, card_id).await?;
    Ok(Json(wire::CardStateResponse { card_id, state: state.code().into() }))
}

/// A wrong passcode was entered on the card: at the third in a row careid locks it. Only the
/// holder, or RA staff in scope who may unlock, renew or repair cards, may report it.
#[utoipa::path(post, path = "/api/v1/cards/{id}/wrong-passcode", tag = "cards", params(("id" = i64, Path, description = "the record's number")),
    responses((status = 200, body = wire::CardStateResponse)), security(("bearer" = [])))]
pub async fn cards_wrong_passcode(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
) -> Result<Json<wire::CardStateResponse>, ApiError> {
    let card_id = card_id(&id)?;
    let state = app.service.record_wrong_passcode(&auth.ctx, &auth.actor, card_id).await?;
    Ok(Json(wire::CardStateResponse { card_id, state: state.code().into() }))
}

/// Reports a card lost, stolen or damaged: revoked at once.
#[utoipa::path(post, path = "/api/v1/cards/{id}/report", tag = "cards", params(("id" = i64, Path, description = "the record's number")), request_body = wire::ReportCard,
    responses((status = 200, body = wire::CardReported)), security(("bearer" = [])))]
pub async fn cards_report(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
    Body(body): Body<wire::ReportCard>,
) -> Result<Json<wire::CardReported>, ApiError> {
    let report = match body.report.as_str() {
        "lost" => CardReport::Lost,
        "stolen" => CardReport::Stolen,
        "damaged" => CardReport::Damaged,
        _ => return Err(InvalidInput::new("report", "must be lost, stolen or damaged").into()),
    };
    let card_id = card_id(&id)?;
    let incident_id = app.service.report_card(&auth.ctx, &auth.actor, card_id, report).await?;
    Ok(Json(wire::CardReported { card_id, incident_id }))
}

/// Cancels a card (RA).
#[utoipa::path(post, path = "/api/v1/cards/{id}/cancel", tag = "cards", params(("id" = i64, Path, description = "the record's number")), responses((status = 204)), security(("bearer" = [])))]
pub async fn cards_cancel(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
) -> Result<StatusCode, ApiError> {
    app.service.cancel_card(&auth.ctx, &auth.actor, card_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Clears an ended card for reuse (RA, card in hand): returns the card's administrative
/// secret sealed to the clearing ceremony's key, which wipes the card with it.
#[utoipa::path(post, path = "/api/v1/cards/{id}/clear", tag = "cards", params(("id" = i64, Path, description = "the record's number")), request_body = wire::ClearCard,
    responses((status = 200, body = wire::CardCleared)), security(("bearer" = [])))]
pub async fn cards_clear(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
    Body(body): Body<wire::ClearCard>,
) -> Result<Json<wire::CardCleared>, ApiError> {
    let key = base64_field("ceremony_key", &body.ceremony_key)?;
    let sealed = app.service.clear_card(&auth.ctx, &auth.actor, card_id(&id)?, &key).await?;
    Ok(Json(wire::CardCleared { sealed_secret: STANDARD.encode(sealed) }))
}

pub(crate) fn card_out(card: &CardRecord, certificates: &[careid_domain::card::CardCertificate]) -> wire::Card {
    wire::Card {
        card_id: card.id,
        serial: card.serial.to_string(),
        person: card.person.to_string(),
        state: card.state.code().into(),
        wrong_passcodes: card.wrong_passcodes,
        issued_by: card.issued_by.as_ref().map(ToString::to_string),
        issued_at: format_time(card.issued_at),
        last_known_safe_at: format_time(card.last_known_safe_at),
        incident_id: card.incident,
        certificates: certificates
            .iter()
            .map(|c| wire::CardCertificateSummary {
                serial: c.serial.clone(),
                not_before: format_time(c.not_before),
                not_after: format_time(c.not_after),
                revoked_at: c.revoked.map(|(at, _)| format_time(at)),
                revocation_reason: c.revoked.map(|(_, reason)| reason.code().into()),
            })
            .collect(),
    }
}

/// A person's cards with their certificates: the person themselves, or the RA in scope.
#[utoipa::path(get, path = "/api/v1/people/{uuid}/cards", tag = "cards", params(("uuid" = String, Path, description = "the person's 12-digit identifier")),
    responses((status = 200, body = [wire::Card])), security(("bearer" = [])))]
pub async fn person_cards_list(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
) -> Result<Json<Vec<wire::Card>>, ApiError> {
    let person = PersonUuid::parse(&id)?;
    app.service.require_records_reader(&auth.ctx, &auth.actor, &person).await?;
    let mut out = Vec::new();
    for card in app.service.cards_of(&person).await? {
        let certificates = app.service.card_certificates(card.id).await?;
        out.push(card_out(&card, &certificates));
    }
    Ok(Json(out))
}

/// Self-service unlock, step one (no session: the card is locked): a one-time code goes to the
/// holder's registered email.
#[utoipa::path(post, path = "/api/v1/cards/unlock-code", tag = "cards", request_body = wire::RequestUnlockCode,
    responses((status = 200, body = wire::UnlockCodeSent)))]
pub async fn cards_unlock_code(
    State(app): State<App>,
    Ctx(ctx): Ctx,
    Body(body): Body<wire::RequestUnlockCode>,
) -> Result<Json<wire::UnlockCodeSent>, ApiError> {
    let serial = CardSerial::parse(&body.serial)?;
    app.limit_target(Kind::Unlock, &format!("serial:{serial}"))?;
    let (card_id, sent_to) = app.service.request_unlock_code(&ctx, &serial).await?;
    Ok(Json(wire::UnlockCodeSent { card_id, sent_to }))
}

/// Self-service unlock, step two: the code releases the secrets, sealed to the ceremony.
#[utoipa::path(post, path = "/api/v1/cards/{id}/self-service-unlock", tag = "cards", params(("id" = i64, Path, description = "the record's number")), request_body = wire::SelfServiceUnlock,
    responses((status = 200, body = wire::CeremonySecrets)))]
pub async fn cards_self_service_unlock(
    State(app): State<App>,
    Ctx(ctx): Ctx,
    PathParam(id): PathParam<String>,
    Body(body): Body<wire::SelfServiceUnlock>,
) -> Result<Json<wire::CeremonySecrets>, ApiError> {
    let card_id = card_id(&id)?;
    app.limit_target(Kind::Unlock, &format!("card:{card_id}"))?;
    let key = base64_field("ceremony_key", &body.ceremony_key)?;
    let code = careid_domain::secret::Secret::new(body.code);
    let sealed = app.service.release_with_unlock_code(&ctx, card_id, &code, &key).await?;
    Ok(Json(wire::CeremonySecrets { sealed_secrets: STANDARD.encode(sealed) }))
}

/// Self-service unlock, step three: the card's own signature proves the ceremony finished.
#[utoipa::path(post, path = "/api/v1/cards/{id}/self-service-unlock/complete", tag = "cards", params(("id" = i64, Path, description = "the record's number")), request_body = wire::CardProof,
    responses((status = 200, body = wire::CardStateResponse)))]
pub async fn cards_self_service_complete(
    State(app): State<App>,
    Ctx(ctx): Ctx,
    PathParam(id): PathParam<String>,
    Body(body): Body<wire::CardProof>,
) -> Result<Json<wire::CardStateResponse>, ApiError> {
    let card_id = card_id(&id)?;
    app.limit_target(Kind::Unlock, &format!("card:{card_id}"))?;
    let signature = base64_field("signature", &body.signature)?;
    let state = app.service.complete_self_service_unlock(&ctx, card_id, &signature).await?;
    Ok(Json(wire::CardStateResponse { card_id, state: state.code().into() }))
}

/// One card with its certificates: its holder, or the RA in scope.
#[utoipa::path(get, path = "/api/v1/cards/{id}", tag = "cards", params(("id" = i64, Path, description = "the record's number")), responses((status = 200, body = wire::Card)), security(("bearer" = [])))]
pub async fn cards_get(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
) -> Result<Json<wire::Card>, ApiError> {
    let card = app.service.card(card_id(&id)?).await?;
    app.service.require_records_reader(&auth.ctx, &auth.actor, &card.person).await?;
    let certificates = app.service.card_certificates(card.id).await?;
    Ok(Json(card_out(&card, &certificates)))
}

/// Closes a lost-card investigation (never by the holder or the reporter).
#[utoipa::path(post, path = "/api/v1/incidents/{id}/close", tag = "cards", params(("id" = i64, Path, description = "the record's number")), request_body = wire::CloseInvestigation,
    responses((status = 204)), security(("bearer" = [])))]
pub async fn incidents_close(
    State(app): State<App>,
    auth: Authed,
    PathParam(id): PathParam<String>,
    Body(body): Body<wire::CloseInvestigation>,
) -> Result<StatusCode, ApiError> {
    let incident = id
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::from(InvalidInput::new("incident_id", "must be a positive whole number")))?;
    app.service.close_investigation(&auth.ctx, &auth.actor, incident, &body.review, &body.outcome).await?;
    Ok(StatusCode::NO_CONTENT)
}
