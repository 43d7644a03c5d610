//! `/log/`: the audit log read-only in the C2SP `tlog-tiles` layout, for any transparency-log
//! client: `/log/checkpoint` (the latest signed checkpoint), `/log/tile/<L>/<N>[.p/<W>]` (hashes)
//! to anyone, and `/log/tile/entries/<N>[.p/<W>]` (entry bundles) to auditors in scope.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use careid_audit::tiles::{TILE_WIDTH, TileRef};

use axum::Json;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use careid_domain::ids::InvalidInput;
use careid_proto as wire;
use careid_service::ProofCheck;

use crate::App;
use crate::error::ApiError;
use crate::extract::{Body, Ctx, bearer};

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{what}\n")).into_response()
}

/// The latest checkpoint: a signed note; never cached, since it moves every second.
#[utoipa::path(get, path = "/log/checkpoint", tag = "audit",
    responses((status = 200, description = "the latest checkpoint, a C2SP signed note", content_type = "text/plain"),
        (status = 404, description = "no checkpoint yet", content_type = "text/plain")))]
pub async fn checkpoint(State(app): State<App>) -> Result<Response, ApiError> {
    let Some(checkpoint) = app.service.log_checkpoint().await? else {
        return Ok(not_found("the log has no checkpoint yet"));
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], checkpoint.note)
        .into_response())
}

/// The verifier key of the log's checkpoints (`name+keyid+key`). Pin it: a key fetched from the
/// log it checks proves only that the checkpoints are the server's own.
#[utoipa::path(get, path = "/log/key", tag = "audit",
    responses((status = 200, description = "the checkpoints' verifier key", content_type = "text/plain"),
        (status = 404, description = "no deployment key", content_type = "text/plain")))]
pub async fn key(State(app): State<App>) -> Response {
    match &app.log_key {
        Some(key) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{key}\n")).into_response(),
        None => not_found("this server does not sign the audit log (no deployment key yet)"),
    }
}

/// A tile. Hash tiles are public; an entry bundle holds the records themselves and is served
/// only to a signed-in auditor whose scope holds every record in it. Full tiles never change
/// and may be cached for good; a partial tile is a prefix of every later version of itself.
#[utoipa::path(get, path = "/log/tile/{path}", tag = "audit",
    params(("path" = String, Path, description = "`<L>/<N>[.p/<W>]` (hashes, public) or `entries/<N>[.p/<W>]` (records, auditors in scope); the slashes are part of it")),
    responses((status = 200, description = "the tile", content_type = "application/octet-stream"),
        (status = 401, body = wire::ErrorBody), (status = 403, body = wire::ErrorBody),
        (status = 404, description = "not a tile path, or beyond the latest checkpoint", content_type = "text/plain"),
        (status = 429, body = wire::ErrorBody)))]
pub async fn tile(
    State(app): State<App>,
    Path(path): Path<String>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(tile) = TileRef::parse(&format!("tile/{path}")) else {
        return Ok(not_found("not a tile path: tile/<level>/<N>[.p/<width>] or tile/entries/<N>[.p/<width>]"));
    };
    let (bytes, cache) = if tile.level.is_some() {
        (app.service.log_hash_tile(tile).await?, "public")
    } else {
        let token = bearer(&headers).ok_or_else(|| {
            ApiError::unauthenticated(
                "entry bundles hold the records themselves: sign in as an auditor (checkpoints and hash tiles are \
                 public)",
            )
        })?;
        let actor = app.service.authenticate(token).await?;
        (app.service.log_entry_bundle(&ctx, &actor, tile.index, tile.width).await?, "private")
    };
    let Some(bytes) = bytes else {
        return Ok(not_found("the latest checkpoint does not reach this tile"));
    };
    let mut response = ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response();
    let cache = match (cache, tile.width == TILE_WIDTH) {
        ("public", true) => "public, max-age=31536000, immutable",
        ("public", false) => "public, max-age=60",
        // Records are never kept by a shared cache.
        _ => "private, no-store",
    };
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Ok(response)
}

fn hash_field(field: &'static str, value: Option<&str>) -> Result<[u8; 32], InvalidInput> {
    let value = value.ok_or_else(|| InvalidInput::new(field, "is required"))?;
    let bytes = STANDARD.decode(value.trim()).map_err(|_| InvalidInput::new(field, "is not base64"))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| InvalidInput::new(field, "is not a 32-byte SHA-256 hash"))
}

/// Checks an inclusion or consistency proof against careid's own tree. Read-only.
#[utoipa::path(post, path = "/log/check", tag = "audit", request_body = wire::ProofCheckRequest,
    responses((status = 200, body = wire::ProofCheckResult), (status = 422, body = wire::ErrorBody)))]
pub async fn check(
    State(app): State<App>,
    Body(body): Body<wire::ProofCheckRequest>,
) -> Result<Json<wire::ProofCheckResult>, ApiError> {
    let proof = body.proof.iter().map(|h| hash_field("proof", Some(h))).collect::<Result<Vec<_>, _>>()?;
    let check = match body.kind.as_str() {
        "inclusion" => {
            let leaf = match (&body.entry, &body.leaf_hash) {
                (Some(entry), None) => careid_audit::leaf_hash(
                    &STANDARD.decode(entry.trim()).map_err(|_| InvalidInput::new("entry", "is not base64"))?,
                ),
                (None, Some(_)) => hash_field("leaf_hash", body.leaf_hash.as_deref())?,
                _ => return Err(InvalidInput::new("entry", "give the entry or its leaf_hash, not both").into()),
            };
            let index = body.index.ok_or_else(|| InvalidInput::new("index", "is required"))?;
            ProofCheck::Inclusion { leaf, index, size: body.tree_size, proof }
        }
        "consistency" => ProofCheck::Consistency {
            old_size: body.old_size.ok_or_else(|| InvalidInput::new("old_size", "is required"))?,
            old_root: hash_field("old_root", body.old_root.as_deref())?,
            size: body.tree_size,
            proof,
        },
        _ => return Err(InvalidInput::new("kind", "must be inclusion or consistency").into()),
    };
    let result = app.service.check_proof(&check).await?;
    Ok(Json(wire::ProofCheckResult { valid: result.is_ok(), reason: result.err().map(|e| e.to_string()) }))
}
