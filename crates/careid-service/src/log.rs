//! The audit log as a transparency log: the Merkle tree follows the records in sequence order,
//! a checkpoint is signed each time it grows, and tiles and checkpoints are read back for
//! `/log/`. The records stay the evidence; see `docs/design/audit-log.md`.

use std::collections::HashMap;

use careid_audit::merkle::{self, CompactRange, Hash};
use careid_audit::note::LogSigner;
use careid_audit::tiles::{MemoryTiles, TILE_HEIGHT, TILE_WIDTH, TileRef, TileSource, TileWriter, TiledHashes};
use careid_domain::access::{Actor, RaAction, Refusal, Rule};
use careid_domain::audit::{Action, AuditRecord, MisuseIncident, SignedCheckpoint, TreeHead};
use careid_domain::ids::InvalidInput;
use careid_domain::ids::{OdsCode, PersonUuid};
use careid_domain::ports::{AuditQuery, StoreError, Transaction};

use crate::audit_orgs::AppendAudit;
use crate::error::not_found;
use crate::ra::first_refusal;
use crate::{RaError, RequestContext, Service};

/// A record with its inclusion proof in the tree of a signed checkpoint.
#[derive(Debug, Clone)]
pub struct RecordProof {
    pub record: AuditRecord,
    pub leaf_hash: Hash,
    pub tree_size: u64,
    /// Leaf to root (RFC 9162).
    pub inclusion: Vec<Hash>,
    /// The signed checkpoint (a C2SP signed note) the proof leads to.
    pub checkpoint: String,
}

/// A proof someone asks careid to check against its own tree.
#[derive(Debug, Clone)]
pub enum ProofCheck {
    /// That `leaf` is record `index` of the tree of `size` records.
    Inclusion { leaf: Hash, index: u64, size: u64, proof: Vec<Hash> },
    /// That the tree of `old_size` records with `old_root` is a prefix of the tree of `size`.
    Consistency { old_size: u64, old_root: Hash, size: u64, proof: Vec<Hash> },
}

/// The longest "not me" comment.
const COMMENT_LIMIT: usize = 2_000;
/// The most records of the flagged record's session attached to its incident.
const SESSION_CONTEXT: u32 = 200;

/// Tiles fetched on demand from a transaction: the proof algorithms ask for hashes without
/// knowing where they live, and which tiles a proof needs depends only on its position and the
/// tree size. A pass that meets a tile not yet fetched records it and sees zeros; the caller
/// fetches what was missing and runs again.
#[derive(Debug, Default)]
struct LazyTiles {
    tiles: HashMap<(u8, u64), Vec<u8>>,
    missing: Vec<(u8, u64, u64)>,
}

impl TileSource for LazyTiles {
    type Error = std::convert::Infallible;
    fn tile(&mut self, level: u8, index: u64, width: u64) -> Result<Vec<u8>, Self::Error> {
        if let Some(tile) = self.tiles.get(&(level, index)) {
            return Ok(tile.clone());
        }
        self.missing.push((level, index, width));
        Ok(vec![0; width as usize * 32])
    }
}

/// Full tiles (256 hashes) never change once written. Proofs read one leaf tile each, spread
/// across the whole log, but the few tiles above the leaves over and over: those are kept here,
/// up to `TILE_CACHE` of them (8 MiB, the upper levels of a log of 67 million records); when
/// full, it starts again.
#[derive(Debug, Default)]
pub(crate) struct TileCache(std::sync::Mutex<HashMap<(u8, u64), Vec<u8>>>);

const TILE_CACHE: usize = 1_024;

impl TileCache {
    fn get(&self, level: u8, index: u64) -> Option<Vec<u8>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&(level, index)).cloned()
    }

    fn keep(&self, level: u8, index: u64, tile: Vec<u8>) {
        let mut tiles = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if tiles.len() >= TILE_CACHE {
            tiles.clear();
        }
        tiles.insert((level, index), tile);
    }
}

/// Runs `proof` over the tree of `size` records, fetching the tiles it needs from `cache` or `tx`.
async fn with_tiles<T>(
    tx: &mut Box<dyn Transaction>,
    cache: &TileCache,
    size: u64,
    proof: impl Fn(&mut TiledHashes<LazyTiles>) -> T,
) -> Result<T, RaError> {
    let mut source = LazyTiles::default();
    loop {
        let mut hashes = TiledHashes::new(source, size);
        let result = proof(&mut hashes);
        source = hashes.into_source();
        if source.missing.is_empty() {
            return Ok(result);
        }
        for (level, index, width) in std::mem::take(&mut source.missing) {
            let full = width == TILE_WIDTH && level > 0;
            if full && let Some(tile) = cache.get(level, index) {
                source.tiles.insert((level, index), tile);
                continue;
            }
            let tile = tx
                .audit_tile(level, index)
                .await?
                .ok_or_else(|| corrupt(format!("tile {level}/{index} is missing")))?;
            let Some(prefix) = tile.get(..width as usize * 32) else {
                return Err(corrupt(format!("tile {level}/{index} is shorter than the tree")));
            };
            if full {
                cache.keep(level, index, prefix.to_vec());
            }
            source.tiles.insert((level, index), prefix.to_vec());
        }
    }
}

/// The inclusion proof of record `seq` in the tree of `size` records, from the stored tiles.
async fn inclusion_in(
    tx: &mut Box<dyn Transaction>,
    cache: &TileCache,
    seq: u64,
    size: u64,
) -> Result<Vec<Hash>, RaError> {
    let proof = with_tiles(tx, cache, size, |h| merkle::inclusion_proof(h, seq, size)).await?;
    match proof.map_err(corrupt)? {
        Ok(proof) => Ok(proof),
        Err(error) => Err(RaError::NotFound { what: "record in the tree", id: error.to_string() }),
    }
}

/// Who a record names as its actor and subject, and the organisation it concerns.
struct RecordParties {
    actor: Option<PersonUuid>,
    subject: Option<PersonUuid>,
    org: Option<OdsCode>,
    session: Option<String>,
    workstation: Option<String>,
    action: String,
}

fn parties(record: &AuditRecord) -> Result<RecordParties, RaError> {
    let entry = careid_audit::decode(&record.entry).map_err(corrupt)?;
    let person = |name: &str| entry.get(name).and_then(|p| PersonUuid::parse(p).ok());
    Ok(RecordParties {
        actor: person("actor.person"),
        subject: person("subject.person"),
        org: entry.get("org").or_else(|| entry.get("actor.org")).and_then(|o| OdsCode::parse(o).ok()),
        session: entry.get("actor.session").map(str::to_owned),
        workstation: entry.get("workstation").map(str::to_owned),
        action: entry.get("action").unwrap_or_default().to_owned(),
    })
}

/// Records added to the tree in one transaction at most.
const ROUND: u32 = 20_000;

fn corrupt(what: impl std::fmt::Display) -> RaError {
    RaError::Store(StoreError::Corrupt(format!("audit log: {what}")))
}

/// The rightmost, not yet full tile of each tile level of a tree of `size` leaves: the only
/// tiles that grow, and all a compact range of the tree needs.
async fn open_tiles(tx: &mut Box<dyn Transaction>, size: u64) -> Result<HashMap<(u8, u64), Vec<u8>>, RaError> {
    let mut tiles = HashMap::new();
    let mut level = 0u8;
    while size >> (u32::from(level) * u32::from(TILE_HEIGHT)) > 0 {
        let hashes = size >> (u32::from(level) * u32::from(TILE_HEIGHT));
        if hashes % TILE_WIDTH != 0 {
            let index = hashes / TILE_WIDTH;
            let width = (hashes % TILE_WIDTH) as usize;
            let tile = tx
                .audit_tile(level, index)
                .await?
                .ok_or_else(|| corrupt(format!("tile {level}/{index} is missing")))?;
            let Some(prefix) = tile.get(..width * 32) else {
                return Err(corrupt(format!("tile {level}/{index} is shorter than the tree")));
            };
            tiles.insert((level, index), prefix.to_vec());
        }
        level += 1;
    }
    Ok(tiles)
}

impl Service {
    /// Adds the records written since the last checkpoint to the tree and signs a checkpoint
    /// of the grown tree, in one transaction; `None` when there was nothing new.
    ///
    /// A checkpoint is signed only over the tree that extends the last one: the new records
    /// must continue the hash chain from where the tree stopped, and the stored tiles must give
    /// the last checkpoint's root, or nothing is signed.
    pub async fn integrate_audit_log(&self, signer: &LogSigner) -> Result<Option<SignedCheckpoint>, RaError> {
        // Most rounds find nothing new: look first without taking the writer from real work.
        {
            let mut tx = self.store.begin_read().await?;
            let head = tx.audit_tree().await?;
            if tx.audit_range(head.size, 1).await?.is_empty() && tx.latest_checkpoint().await?.is_some() {
                return Ok(None);
            }
        }
        let mut tx = self.store.begin_write().await?;
        let head = tx.audit_tree().await?;
        let records = tx.audit_range(head.size, ROUND).await?;
        let latest = tx.latest_checkpoint().await?;
        if records.is_empty() && (latest.is_some() || head.size > 0) {
            return Ok(None);
        }
        if let Some(latest) = &latest
            && (latest.size != head.size || latest.root != head.root)
        {
            return Err(corrupt(format!(
                "the tree (size {}) is not where the last checkpoint (size {}) left it",
                head.size, latest.size
            )));
        }
        let (chain, leaves) =
            careid_audit::verify_chain_leaves(head.chain_hash, head.size, &records).map_err(corrupt)?;

        let open = open_tiles(&mut tx, head.size).await?;
        let mut hashes = TiledHashes::new(MemoryTiles(open), head.size);
        let mut range = CompactRange::at(&mut hashes, head.size).map_err(corrupt)?;
        if range.root() != head.root {
            return Err(corrupt("the stored tiles do not give the tree's root"));
        }
        let mut writer = TileWriter::with_open_tiles(hashes.into_source().0);
        for leaf in leaves {
            range.push(leaf, |level, index, hash| {
                writer.completed(level, index, hash);
            });
        }
        let grown = TreeHead { size: range.size(), root: range.root(), chain_hash: chain };
        let tiles: Vec<(u8, u64, Vec<u8>)> = writer.tiles.into_iter().map(|((l, i), h)| (l, i, h)).collect();
        tx.put_audit_tiles(&tiles).await?;
        tx.set_audit_tree(&grown).await?;
        let checkpoint = SignedCheckpoint {
            size: grown.size,
            root: grown.root,
            note: signer.sign(grown.size, &grown.root),
            signed_at: self.clock.now(),
        };
        tx.insert_checkpoint(&checkpoint).await?;
        tx.commit().await?;
        Ok(Some(checkpoint))
    }

    /// A record with its inclusion proof in the latest signed checkpoint. Anyone may prove a
    /// record that names them (as actor or subject); the RA Manager, privacy officer and
    /// Caldicott Guardian any record of the organisations in their scope. Audited.
    pub async fn prove_audit_record(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        seq: u64,
    ) -> Result<RecordProof, RaError> {
        let mut tx = self.begin_write_as(actor).await?;
        let record = self.load_record(&mut tx, seq).await?;
        let parties = parties(&record)?;
        let mut event = self.event(ctx, actor.into(), Action::AuditProve, "audit", format!("record {seq}"));
        event.orgs = parties.org.iter().cloned().collect();
        let own = parties.actor.as_ref() == Some(&actor.person) || parties.subject.as_ref() == Some(&actor.person);
        if !own {
            let org = parties.org.clone().unwrap_or_else(|| actor.org.clone());
            let scope = self.org_scope(&mut tx, actor, &org).await?;
            if let Err(refusal) = first_refusal([actor.require(RaAction::ReadAudit), scope]) {
                return Err(self.refuse(tx, event, refusal).await);
            }
        }
        let checkpoint = tx.latest_checkpoint().await?.ok_or_else(|| not_found("signed checkpoint", "yet"))?;
        if seq >= checkpoint.size {
            return Err(RaError::NotFound {
                what: "signed checkpoint covering record",
                id: format!("{seq} yet (the log is signed every second; ask again)"),
            });
        }
        let size = checkpoint.size;
        let inclusion = inclusion_in(&mut tx, &self.tiles, seq, size).await?;
        let leaf_hash = careid_audit::leaf_hash(&record.entry);
        // What is handed out must check out against the checkpoint, or it is not handed out.
        merkle::verify_inclusion(&leaf_hash, seq, size, &inclusion, &checkpoint.root).map_err(corrupt)?;
        event.detail.push(("tree_size", size.to_string()));
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(RecordProof { record, leaf_hash, tree_size: size, inclusion, checkpoint: checkpoint.note })
    }

    /// A holder says a record naming them as its actor was not them. An incident opens with
    /// the RA and the Caldicott Guardian of the organisation the record concerns, with what was
    /// known around the record (its session, workstation and card, and the session's other
    /// records); the flag itself is in the log.
    pub async fn flag_not_me(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        seq: u64,
        comment: &str,
    ) -> Result<MisuseIncident, RaError> {
        let comment = comment.trim();
        if comment.is_empty() || comment.chars().count() > COMMENT_LIMIT {
            return Err(RaError::Invalid(InvalidInput::new(
                "comment",
                format!("say what you know of it, in 1 to {COMMENT_LIMIT} characters"),
            )));
        }
        let now = self.clock.now();
        let mut tx = self.begin_write_as(actor).await?;
        let record = self.load_record(&mut tx, seq).await?;
        let parties = parties(&record)?;
        let mut event = self.event(ctx, actor.into(), Action::AuditNotMe, "audit", format!("record {seq}"));
        event.subject_person = Some(actor.person.clone());
        event.orgs = parties.org.iter().cloned().collect();
        let check = if parties.actor.as_ref() != Some(&actor.person) {
            Err(Refusal::new(Rule::NotTheActor, format!("record {seq} does not name you as the one who acted")))
        } else if parties.action == Action::AuditNotMe.code() {
            Err(Refusal::new(Rule::NotTheActor, format!("record {seq} is your own \"not me\"")))
        } else if let Some(existing) = tx.misuse_incident_of_record(seq).await? {
            Err(Refusal::new(
                Rule::AlreadyFlagged,
                format!("record {seq} is already flagged: incident {}", existing.id),
            ))
        } else {
            Ok(())
        };
        if let Err(refusal) = check {
            return Err(self.refuse(tx, event, refusal).await);
        }

        let mut context = vec![("record".to_owned(), seq.to_string())];
        if let Some(workstation) = &parties.workstation {
            context.push(("workstation".into(), workstation.clone()));
        }
        if let Some(session_id) = &parties.session {
            context.push(("session".into(), session_id.clone()));
            if let Some(session) = tx.session_by_id(session_id).await? {
                context.push(("session_auth".into(), session.auth.code().to_owned()));
                if let Some(presence) = &session.card {
                    let card = self.load_card(&mut tx, presence.card).await?;
                    context.push(("card".into(), card.serial.to_string()));
                    context.push(("workstation".into(), presence.workstation.clone()));
                }
            }
            let others = tx.audit_records_of_session(session_id, SESSION_CONTEXT).await?;
            let seqs: Vec<String> = others.iter().map(|r| r.seq.to_string()).collect();
            context.push(("session_records".into(), seqs.join(",")));
        }
        context.dedup();
        let mut incident = MisuseIncident {
            id: 0,
            record: seq,
            person: actor.person.clone(),
            org: parties.org.clone(),
            comment: comment.to_owned(),
            context,
            opened_at: now,
        };
        incident.id = tx.insert_misuse_incident(&incident).await?;
        event.detail.push(("incident", incident.id.to_string()));
        event.detail.push(("comment", incident.comment.clone()));
        let flagged = tx.record(&event).await?;
        let new = crate::cases::NewCase {
            source: careid_domain::case::CaseSource::NotMe,
            subject: actor.person.clone(),
            reporter: Some(actor.person.clone()),
            org: incident.org.clone(),
            summary: format!("record {seq} is not me: {}", incident.comment),
            evidence: vec![seq, flagged],
            incident: None,
        };
        self.open_case_in(ctx, &mut tx, actor.into(), new).await?;
        tx.commit().await?;
        tracing::warn!(incident = incident.id, record = seq, "a holder flagged a record \"not me\"");
        Ok(incident)
    }

    /// The "not me" incidents of an organisation and those under it: for the RA, the privacy
    /// officer and the Caldicott Guardian in scope, never for a sponsor alone.
    pub async fn misuse_incidents(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        org: Option<OdsCode>,
    ) -> Result<Vec<MisuseIncident>, RaError> {
        let org = org.unwrap_or_else(|| actor.org.clone());
        let mut tx = self.begin_write_as(actor).await?;
        let mut event = self.event(ctx, actor.into(), Action::AuditRead, "incidents", &org);
        event.orgs = vec![org.clone()];
        let scope = self.org_scope(&mut tx, actor, &org).await?;
        if let Err(refusal) = first_refusal([actor.require(RaAction::SeeIncidents), scope]) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let incidents = tx.misuse_incidents_under(&org, 500).await?;
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(incidents)
    }

    async fn load_record(&self, tx: &mut Box<dyn Transaction>, seq: u64) -> Result<AuditRecord, RaError> {
        let mut found = tx.audit_range(seq, 1).await?;
        match found.pop() {
            Some(record) if record.seq == seq => Ok(record),
            _ => Err(not_found("audit record", seq)),
        }
    }

    /// The inclusion proof of record `seq` in the tree of `size` records (no more than the tree
    /// holds), read from the stored tiles. The proof reveals nothing but hashes.
    pub async fn log_inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>, RaError> {
        let mut tx = self.store.begin_read().await?;
        let tree = tx.audit_tree().await?;
        if size > tree.size {
            return Err(RaError::NotFound { what: "tree of size", id: size.to_string() });
        }
        inclusion_in(&mut tx, &self.tiles, seq, size).await
    }

    /// Checks a proof against careid's own tree (read-only: nothing is written). `Ok(Err(_))`
    /// says why the proof does not hold.
    pub async fn check_proof(&self, check: &ProofCheck) -> Result<Result<(), merkle::ProofError>, RaError> {
        let size = match check {
            ProofCheck::Inclusion { size, .. } | ProofCheck::Consistency { size, .. } => *size,
        };
        let mut tx = self.store.begin_read().await?;
        let tree = tx.audit_tree().await?;
        if size > tree.size || size == 0 {
            return Err(RaError::Invalid(InvalidInput::new(
                "tree_size",
                format!("must be 1 to {}, the records in the log's signed tree", tree.size),
            )));
        }
        let root = with_tiles(&mut tx, &self.tiles, size, |h| merkle::tree_hash(h, size)).await?.map_err(corrupt)?;
        Ok(match check {
            ProofCheck::Inclusion { leaf, index, size, proof } => {
                merkle::verify_inclusion(leaf, *index, *size, proof, &root)
            }
            ProofCheck::Consistency { old_size, old_root, size, proof } => {
                merkle::verify_consistency(*old_size, *size, proof, old_root, &root)
            }
        })
    }

    /// The latest signed checkpoint, if the log has been signed yet, with the cosignatures of
    /// the witnesses that have cosigned it so far after the log's own signature.
    pub async fn log_checkpoint(&self) -> Result<Option<SignedCheckpoint>, RaError> {
        let mut tx = self.store.begin_read().await?;
        let Some(mut checkpoint) = tx.latest_checkpoint().await? else { return Ok(None) };
        for line in tx.cosignatures(checkpoint.size).await? {
            checkpoint.note.push_str(&line);
        }
        Ok(Some(checkpoint))
    }

    /// Keeps a witness's cosignature of the checkpoint of `size`: only a line of the
    /// `witness`'s that verifies over that very checkpoint is kept. Not an audit record: like
    /// the checkpoint, it signs the log rather than being in it.
    pub async fn record_cosignature(
        &self,
        size: u64,
        witness: &careid_audit::witness::CosignatureVerifier,
        line: &str,
    ) -> Result<bool, RaError> {
        let mut tx = self.store.begin_write().await?;
        let Some(checkpoint) = tx.latest_checkpoint().await?.filter(|c| c.size == size) else { return Ok(false) };
        let cosigned = format!("{}{line}", checkpoint.note);
        if witness.verify(&cosigned).is_err() || line.matches('\n').count() != 1 || !line.ends_with('\n') {
            return Ok(false);
        }
        tx.insert_cosignature(size, witness.name(), line).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The consistency proof from the tree of `old` records to that of `size` (no more than the
    /// tree holds), from the stored tiles: what a witness asks for.
    pub async fn log_consistency_proof(&self, old: u64, size: u64) -> Result<Vec<Hash>, RaError> {
        let mut tx = self.store.begin_read().await?;
        if size > tx.audit_tree().await?.size || old > size {
            return Err(RaError::NotFound { what: "tree of size", id: size.to_string() });
        }
        with_tiles(&mut tx, &self.tiles, size, |h| merkle::consistency_proof(h, old, size))
            .await?
            .map_err(corrupt)?
            .map_err(corrupt)
    }

    /// A tile of the tree's hashes, as `/log/tile/<L>/...` serves it to anyone: hashes say
    /// nothing of what they hash. `None` for a tile the latest checkpoint does not reach, and
    /// for an entry bundle, which only `log_entry_bundle` serves.
    pub async fn log_hash_tile(&self, tile: TileRef) -> Result<Option<Vec<u8>>, RaError> {
        let Some(level) = tile.level else { return Ok(None) };
        let mut tx = self.store.begin_read().await?;
        let Some(checkpoint) = tx.latest_checkpoint().await? else { return Ok(None) };
        if tile.width > TileRef::width_at(tile.level, tile.index, checkpoint.size) {
            return Ok(None);
        }
        let stored = tx.audit_tile(level, tile.index).await?;
        let hashes = stored
            .and_then(|t| t.get(..tile.width as usize * 32).map(<[u8]>::to_vec))
            .ok_or_else(|| corrupt(format!("tile {} is missing or short", tile.path())))?;
        Ok(Some(hashes))
    }

    /// An entry bundle (`/log/tile/entries/...`): the records themselves, so only for an
    /// auditor (`ReadAudit`) whose scope holds every record in it, and the read is audited.
    /// Everyone else checks the log's consistency from checkpoints and hash tiles, and each
    /// holder reads their own records with proofs. `None` for a bundle the latest checkpoint
    /// does not reach.
    pub async fn log_entry_bundle(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        index: u64,
        width: u64,
    ) -> Result<Option<Vec<u8>>, RaError> {
        let mut tx = self.begin_write_as(actor).await?;
        let Some(checkpoint) = tx.latest_checkpoint().await? else { return Ok(None) };
        if width == 0 || width > TileRef::width_at(None, index, checkpoint.size) {
            return Ok(None);
        }
        let first = index * TILE_WIDTH;
        let path = TileRef { level: None, index, width }.path();
        let mut event = self.event(ctx, actor.into(), Action::AuditRead, "audit", &path);
        event.orgs = vec![actor.org.clone()];
        // Every record of the bundle must be about the actor's organisations: the scoped query
        // over the bundle's range finds them all, or the bundle is not theirs to read.
        let in_scope = tx
            .audit_records(&AuditQuery {
                org_under: Some(actor.org.clone()),
                before_seq: Some(first + width),
                limit: width as u32,
                ..AuditQuery::default()
            })
            .await?
            .iter()
            .filter(|r| r.seq >= first)
            .count() as u64;
        let scope = if in_scope == width {
            Ok(())
        } else {
            Err(Refusal::new(
                Rule::OutOfScope,
                format!(
                    "{} of the {width} records in {path} concern organisations outside {}: read them through \
                     /api/v1/audit",
                    width - in_scope,
                    actor.org
                ),
            ))
        };
        if let Err(refusal) = first_refusal([actor.require(RaAction::ReadAudit), scope]) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let records = tx.audit_range(first, width as u32).await?;
        if records.len() as u64 != width {
            return Err(corrupt(format!("records {first}.. are missing")));
        }
        let bundle = careid_audit::tiles::encode_bundle(records.iter().map(|r| r.entry.as_slice())).map_err(corrupt)?;
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(Some(bundle))
    }
}

/// A query column that does not say what the hashed entry says: the record, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {seq}: {what}")]
pub struct IndexMismatch {
    pub seq: u64,
    pub what: String,
}

/// How many records the index check reads at a time.
const INDEX_BATCH: u32 = 4096;

impl Service {
    /// Checks every column a query filters on against the hashed entries of the first `size`
    /// records: the audit log's own columns and organisations (`careid_audit::index`), and each
    /// reported patient access against its record (the patient by its pseudonym, which needs
    /// this deployment's key). Names the first record that disagrees; returns how many records
    /// were checked.
    pub async fn check_query_index(&self, size: u64) -> Result<Result<u64, IndexMismatch>, RaError> {
        let pseudonym = self.card_authority().ok().map(|a| &a.patient_key);
        let mut tx = self.store.begin_read().await?;
        let mut from = 0;
        let mut accesses = Vec::new().into_iter().peekable();
        // Whether every access from the last read on is in `accesses` already.
        let mut all_read = false;
        while from < size {
            let records = tx.audit_range(from, INDEX_BATCH.min((size - from) as u32)).await?;
            let index = tx.audit_index(from, records.len() as u32).await?;
            if records.is_empty() {
                break;
            }
            for (record, row) in records.iter().zip(&index) {
                let mismatch = |what: String| Ok(Err(IndexMismatch { seq: record.seq, what }));
                if row.seq != record.seq {
                    return mismatch(format!("its query columns are missing (the next row is record {})", row.seq));
                }
                if let Err(what) = careid_audit::index::check_index(&record.entry, row) {
                    return mismatch(what);
                }
                if accesses.peek().is_none() && !all_read {
                    let read = tx.patient_access_range(record.seq, INDEX_BATCH).await?;
                    all_read = read.len() < INDEX_BATCH as usize;
                    accesses = read.into_iter().peekable();
                }
                let access = accesses.next_if(|a| a.seq == record.seq);
                let stray = accesses.peek().filter(|a| a.seq < record.seq).map(|a| a.seq);
                if let Some(seq) = stray {
                    return Ok(Err(IndexMismatch {
                        seq,
                        what: "a patient access names it, but it is no such record".into(),
                    }));
                }
                if let Err(what) = check_patient_access(&record.entry, access.as_ref(), pseudonym) {
                    return mismatch(what);
                }
            }
            if index.len() < records.len() {
                let seq = records[index.len()].seq;
                return Ok(Err(IndexMismatch { seq, what: "its query columns are missing".into() }));
            }
            from = records.last().map_or(size, |r| r.seq + 1);
        }
        Ok(Ok(from))
    }
}

/// A reported access as the privacy officer's queries read it, against its record.
fn check_patient_access(
    entry: &[u8],
    access: Option<&careid_domain::patient::PatientAccess>,
    pseudonym: Option<&careid_pki::PatientKey>,
) -> Result<(), String> {
    let entry = careid_audit::decode(entry).map_err(|e| format!("its entry does not decode: {e}"))?;
    let is_access = entry.get("action") == Some(Action::PatientAccess.code());
    let access = match (is_access, access) {
        (false, None) => return Ok(()),
        (true, None) => return Err("its patient access is missing from the privacy officer's index".into()),
        (false, Some(_)) => return Err("a patient access names it, but it records no access".into()),
        (true, Some(access)) => access,
    };
    let mut expected = vec![
        ("actor.person", Some(access.person.to_string())),
        ("detail.client", Some(access.client.to_string())),
        ("detail.record_action", Some(access.action.code().to_owned())),
        ("detail.relationship", Some(access.relationship.code().to_owned())),
        ("detail.accessed_at", Some(careid_audit::format_time(access.accessed_at))),
        ("detail.alert", access.alert.clone()),
    ];
    if let Some(key) = pseudonym {
        expected.push(("subject", Some(format!("patient {}", key.pseudonym(access.patient.as_str())))));
    }
    for (field, stored) in expected {
        if entry.get(field) != stored.as_deref() {
            return Err(format!(
                "its patient access says {stored:?} where its entry's {field} says {:?}",
                entry.get(field)
            ));
        }
    }
    if !entry.fields.iter().any(|(name, org)| name == "org" && *org == access.org.as_str()) {
        return Err(format!("its patient access names organisation {}, which its entry does not", access.org));
    }
    Ok(())
}
