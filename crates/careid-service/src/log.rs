//! The audit log as a transparency log: the Merkle tree follows the records in sequence order,
//! a checkpoint is signed each time it grows, and tiles and checkpoints are read back for
//! `/log/`. The records stay the evidence; see `docs/design/audit-log.md`.

use std::collections::HashMap;

use careid_audit::merkle::CompactRange;
use careid_audit::note::LogSigner;
use careid_audit::tiles::{MemoryTiles, TILE_HEIGHT, TILE_WIDTH, TileRef, TileWriter, TiledHashes};
use careid_domain::audit::{SignedCheckpoint, TreeHead};
use careid_domain::ports::{StoreError, Transaction};

use crate::{RaError, Service};

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
        let mut tx = self.store.begin_write().await?;
        let head = tx.audit_tree().await?;
        let records = tx.audit_records_from(head.size, ROUND).await?;
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
        let chain = careid_audit::verify_chain(head.chain_hash, head.size, &records).map_err(corrupt)?;

        let open = open_tiles(&mut tx, head.size).await?;
        let mut hashes = TiledHashes::new(MemoryTiles(open), head.size);
        let mut range = CompactRange::at(&mut hashes, head.size).map_err(corrupt)?;
        if range.root() != head.root {
            return Err(corrupt("the stored tiles do not give the tree's root"));
        }
        let mut writer = TileWriter::with_open_tiles(hashes.into_source().0);
        for record in &records {
            range.push(careid_audit::leaf_hash(&record.entry), |level, index, hash| {
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

    /// The latest signed checkpoint, if the log has been signed yet.
    pub async fn log_checkpoint(&self) -> Result<Option<SignedCheckpoint>, RaError> {
        Ok(self.store.begin_read().await?.latest_checkpoint().await?)
    }

    /// A tile of the tree (hashes) or of the entries (a bundle), as `/log/tile/...` serves it;
    /// `None` for a tile the latest checkpoint does not reach.
    pub async fn log_tile(&self, tile: TileRef) -> Result<Option<Vec<u8>>, RaError> {
        let mut tx = self.store.begin_read().await?;
        let Some(checkpoint) = tx.latest_checkpoint().await? else { return Ok(None) };
        if tile.width > TileRef::width_at(tile.level, tile.index, checkpoint.size) {
            return Ok(None);
        }
        let Some(level) = tile.level else {
            let records = tx.audit_records_from(tile.index * TILE_WIDTH, tile.width as u32).await?;
            if records.len() as u64 != tile.width {
                return Err(corrupt(format!("records {}.. are missing", tile.index * TILE_WIDTH)));
            }
            let bundle =
                careid_audit::tiles::encode_bundle(records.iter().map(|r| r.entry.as_slice())).map_err(corrupt)?;
            return Ok(Some(bundle));
        };
        let stored = tx.audit_tile(level, tile.index).await?;
        let hashes = stored
            .and_then(|t| t.get(..tile.width as usize * 32).map(<[u8]>::to_vec))
            .ok_or_else(|| corrupt(format!("tile {} is missing or short", tile.path())))?;
        Ok(Some(hashes))
    }
}
