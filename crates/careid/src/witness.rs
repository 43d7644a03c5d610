//! `careid audit witness`: a witness of careid logs (C2SP tlog-witness), run by someone other
//! than the log's operator (another trust, the ICB, a national body). It keeps, for each log it
//! follows, the newest checkpoint it cosigned, in a file of its own; it cosigns a new one only
//! when a consistency proof shows that it extends that one, and never goes backwards. The
//! check and the write are one step under a lock, so two requests cannot roll it back.
//!
//! The log side is `submit_to_witnesses`: `careid serve` sends each checkpoint to the witnesses
//! configured and keeps the cosignatures they return beside it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use careid_audit::note::{LogSigner, NoteVerifier};
use careid_audit::witness::{AddCheckpoint, CosignatureVerifier, Cosigner, WitnessRefusal, decide, note_origin};
use careid_service::Service;
use tokio::sync::Mutex;

#[derive(Debug, clap::Args)]
pub struct WitnessArgs {
    /// Address and port to listen on; it serves `POST /add-checkpoint`.
    #[arg(long, default_value = "127.0.0.1:7380")]
    listen: SocketAddr,
    /// The witness's name, in its cosignatures (a schema-less URL such as `witness.example/w1`).
    #[arg(long)]
    name: String,
    /// The witness's signing key (Ed25519, PKCS#8): made, readable by its owner only, if missing.
    #[arg(long)]
    key_file: PathBuf,
    /// The directory where the newest cosigned checkpoint of each log is kept.
    #[arg(long)]
    state: PathBuf,
    /// The verifier key of a log to follow (`careid audit key`); repeat for several logs.
    #[arg(long = "log", required = true)]
    logs: Vec<String>,
}

struct Witness {
    cosigner: Cosigner,
    logs: HashMap<String, NoteVerifier>,
    state: PathBuf,
    /// Held from reading a log's state to writing the new one.
    lock: Mutex<()>,
}

fn state_file(dir: &Path, origin: &str) -> PathBuf {
    dir.join(origin.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' }).collect::<String>())
}

/// Writes `bytes` to `path` whole or not at all, and durably, before the witness answers.
fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let fresh = path.with_extension("new");
    let mut file = std::fs::File::create(&fresh).with_context(|| format!("writing {}", fresh.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&fresh, path).with_context(|| format!("writing {}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Witness {
    async fn add_checkpoint(&self, body: &str) -> Result<String, WitnessRefusal> {
        let request = AddCheckpoint::parse(body)?;
        let origin = note_origin(&request.note).unwrap_or_default();
        let log = self.logs.get(origin).ok_or_else(|| WitnessRefusal::UnknownLog(origin.to_owned()))?;
        let _held = self.lock.lock().await;
        let path = state_file(&self.state, origin);
        let held = match std::fs::read_to_string(&path) {
            Ok(note) => Some(log.verify(&note).map_err(|e| {
                tracing::error!(%e, "the witness's own state for {origin} does not verify");
                WitnessRefusal::Malformed("the witness cannot read its own state".into())
            })?),
            Err(_) => None,
        };
        let checkpoint = decide(log, held.as_ref(), &request)?;
        if let Err(error) = write_durably(&path, request.note.as_bytes()) {
            tracing::error!(%error, "could not keep the cosigned checkpoint; not cosigning");
            return Err(WitnessRefusal::Malformed("the witness could not keep its state".into()));
        }
        let now = careid_domain::ports::Clock::now(&crate::SystemClock).unix_timestamp().max(0) as u64;
        tracing::info!(origin, size = checkpoint.size, "cosigned");
        Ok(self.cosigner.cosign(&checkpoint, now))
    }
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: String) -> Response {
    match witness.add_checkpoint(&body).await {
        Ok(line) => line.into_response(),
        Err(WitnessRefusal::Conflict(size)) => {
            (StatusCode::CONFLICT, [(header::CONTENT_TYPE, "text/x.tlog.size")], format!("{size}\n")).into_response()
        }
        Err(refusal) => {
            let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
            (status, format!("{refusal}\n")).into_response()
        }
    }
}

pub async fn run(args: WitnessArgs) -> anyhow::Result<()> {
    let pkcs8 = if args.key_file.exists() {
        std::fs::read(&args.key_file).with_context(|| format!("reading {}", args.key_file.display()))?
    } else {
        let pkcs8 = LogSigner::generate_pkcs8()?;
        crate::client::write_private(&args.key_file, &pkcs8)?;
        pkcs8
    };
    let cosigner = Cosigner::new(&args.name, &pkcs8).context("the witness name or key")?;
    let mut logs = HashMap::new();
    for key in &args.logs {
        let log = NoteVerifier::parse(key).with_context(|| format!("the log key {key}"))?;
        logs.insert(log.name().to_owned(), log);
    }
    std::fs::create_dir_all(&args.state).with_context(|| format!("creating {}", args.state.display()))?;
    println!("witness key: {}", cosigner.verifier_key());
    let witness = Arc::new(Witness { cosigner, logs, state: args.state, lock: Mutex::new(()) });
    let app = axum::Router::new().route("/add-checkpoint", axum::routing::post(add_checkpoint)).with_state(witness);
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    eprintln!("witness listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).with_graceful_shutdown(crate::stop_signal()).await.context("serving")
}

/// What the log knows of each witness: the size it last cosigned.
#[derive(Debug, Default)]
pub(crate) struct WitnessedSizes(HashMap<String, u64>);

/// Sends the latest checkpoint to every witness that has not cosigned it, with a consistency
/// proof from the size the witness holds, and keeps the cosignatures that verify. A witness
/// that holds another size says which (409), and is asked again from there once.
pub(crate) async fn submit_to_witnesses(
    service: &Service,
    http: &reqwest::Client,
    witnesses: &[(String, CosignatureVerifier)],
    sizes: &mut WitnessedSizes,
) -> anyhow::Result<()> {
    let Some(latest) = service.log_checkpoint().await? else { return Ok(()) };
    for (url, key) in witnesses {
        let mut old = sizes.0.get(url).copied().unwrap_or(0);
        for _ in 0..2 {
            if old >= latest.size && old != 0 {
                break;
            }
            let proof = if old == 0 { Vec::new() } else { service.log_consistency_proof(old, latest.size).await? };
            let body = AddCheckpoint { old, proof, note: latest.note.clone() }.to_body();
            let response = match http.post(format!("{url}/add-checkpoint")).body(body).send().await {
                Ok(response) => response,
                Err(error) => {
                    tracing::warn!(%error, witness = key.name(), "the witness did not answer");
                    break;
                }
            };
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            if status.is_success() {
                if service.record_cosignature(latest.size, key, &text).await? {
                    sizes.0.insert(url.clone(), latest.size);
                } else {
                    tracing::warn!(
                        witness = key.name(),
                        "the witness's answer is not its cosignature of the checkpoint"
                    );
                }
                break;
            }
            match (status.as_u16(), text.trim().parse::<u64>()) {
                (409, Ok(held)) if held != old => old = held,
                _ => {
                    tracing::warn!(witness = key.name(), %status, answer = text.trim(), "the witness refused the checkpoint");
                    break;
                }
            }
        }
    }
    Ok(())
}

/// How many of `required` witnesses cosigned `note`, and the names of those that did not.
pub(crate) fn cosigned_by(note: &str, required: &[CosignatureVerifier]) -> (usize, Vec<String>) {
    let missing: Vec<String> =
        required.iter().filter(|w| w.verify(note).is_err()).map(|w| w.name().to_owned()).collect();
    (required.len() - missing.len(), missing)
}
