//! `/log/`: the audit log read-only in the C2SP `tlog-tiles` layout, for any transparency-log
//! client: `/log/checkpoint` (the latest signed checkpoint), `/log/tile/<L>/<N>[.p/<W>]` (hashes)
//! and `/log/tile/entries/<N>[.p/<W>]` (entry bundles).

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use careid_audit::tiles::{TILE_WIDTH, TileRef};

use crate::App;
use crate::error::ApiError;

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{what}\n")).into_response()
}

/// The latest checkpoint: a signed note; never cached, since it moves every second.
pub async fn checkpoint(State(app): State<App>) -> Result<Response, ApiError> {
    let Some(checkpoint) = app.service.log_checkpoint().await? else {
        return Ok(not_found("the log has no checkpoint yet"));
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], checkpoint.note)
        .into_response())
}

/// The verifier key of the log's checkpoints (`name+keyid+key`). Pin it: a key fetched from the
/// log it checks proves only that the checkpoints are the server's own.
pub async fn key(State(app): State<App>) -> Response {
    match &app.log_key {
        Some(key) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{key}\n")).into_response(),
        None => not_found("this server does not sign the audit log (no deployment key yet)"),
    }
}

/// A tile. Full tiles never change and may be cached for good; a partial tile is a prefix of
/// every later version of itself, so it may be cached too.
pub async fn tile(State(app): State<App>, Path(path): Path<String>) -> Result<Response, ApiError> {
    let Some(tile) = TileRef::parse(&format!("tile/{path}")) else {
        return Ok(not_found("not a tile path: tile/<level>/<N>[.p/<width>] or tile/entries/<N>[.p/<width>]"));
    };
    let Some(bytes) = app.service.log_tile(tile).await? else {
        return Ok(not_found("the latest checkpoint does not reach this tile"));
    };
    let mut response = ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response();
    let cache = if tile.width == TILE_WIDTH { "public, max-age=31536000, immutable" } else { "public, max-age=60" };
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Ok(response)
}
