//! Checking a whole log against a checkpoint, record by record, naming the first record that is
//! not what the checkpoint says. Wherever the records come from (the database, or tiles over
//! HTTP), the caller feeds them in order.

use careid_domain::audit::AuditRecord;

use crate::merkle::{CompactRange, Hash};
use crate::note::Checkpoint;
use crate::{GENESIS, chain_hash_of_leaf, check_entry, leaf_hash};

/// Below this many records a batch is prepared on the calling thread: starting threads would
/// cost more than it saves.
const PARALLEL_FROM: usize = 2048;

/// What can be worked out about each entry of a batch on its own, before the records before
/// it are checked: its leaf hash and whether it decodes. A large batch is prepared on every
/// core; a pipeline can prepare the next batch while the last one is checked in order.
#[derive(Debug)]
pub struct Prepared(Vec<(Hash, Result<(), crate::DecodeError>)>);

impl Prepared {
    pub fn records(records: &[AuditRecord]) -> Prepared {
        Prepared::of(records, |r| &r.entry)
    }

    pub fn entries(entries: &[&[u8]]) -> Prepared {
        Prepared::of(entries, |entry| entry)
    }

    /// Entries prepared.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn of<T: Sync>(items: &[T], entry: impl Fn(&T) -> &[u8] + Sync) -> Prepared {
        let one = |item: &T| {
            let entry = entry(item);
            (leaf_hash(entry), check_entry(entry))
        };
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        if threads < 2 || items.len() < PARALLEL_FROM {
            return Prepared(items.iter().map(one).collect());
        }
        let per_thread = items.len().div_ceil(threads);
        let one = &one;
        Prepared(std::thread::scope(|scope| {
            // The first part on this thread, the others on threads of their own.
            let (first, rest) = items.split_at(per_thread);
            let others: Vec<_> = rest
                .chunks(per_thread)
                .map(|part| scope.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
                .collect();
            let mut prepared: Vec<_> = first.iter().map(one).collect();
            for part in others {
                prepared.extend(part.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
            }
            prepared
        }))
    }
}

/// The first thing found wrong, with the record's position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("record {expected} is missing: the next record found is {found}")]
    Gap { expected: u64, found: u64 },
    #[error("record {seq} is not a valid entry: {error}")]
    Undecodable { seq: u64, error: crate::DecodeError },
    #[error("record {seq} does not match its chain hash: it was edited, or moved from elsewhere in the log")]
    ChainMismatch { seq: u64 },
    #[error("record {seq} differs from the leaf hash the tree holds for it: it was edited after it joined the tree")]
    LeafMismatch { seq: u64 },
    #[error("the log ends after {found} records, but the checkpoint covers {size}")]
    Truncated { found: u64, size: u64 },
    #[error("the log has records beyond the checkpoint's {size} where none were expected")]
    Beyond { size: u64 },
    #[error(
        "the {size} records do not give the checkpoint's root: the log was rewritten, or this is not its checkpoint"
    )]
    RootMismatch { size: u64 },
}

/// Feeds records 0, 1, 2, ... of a log and checks them against a checkpoint.
#[derive(Debug)]
pub struct LogVerifier {
    checkpoint: Checkpoint,
    range: CompactRange,
    chain: Hash,
}

impl LogVerifier {
    pub fn new(checkpoint: Checkpoint) -> Self {
        Self { checkpoint, range: CompactRange::new(), chain: GENESIS }
    }

    /// Records checked so far.
    pub fn checked(&self) -> u64 {
        self.range.size()
    }

    pub fn size(&self) -> u64 {
        self.checkpoint.size
    }

    /// Checks the next record as stored (with its sequence number and chain hash), against
    /// the leaf hash the tree holds for it when the caller has it.
    pub fn record(&mut self, record: &AuditRecord, tree_leaf: Option<&Hash>) -> Result<(), VerifyError> {
        self.records(std::slice::from_ref(record), tree_leaf.map(<[u8; 32]>::as_slice))
    }

    /// Checks the next records as stored, in order, exactly as `record` would one by one
    /// (the same first error), with the leaf hashes the tree holds for them when the caller
    /// has them (32 bytes each, as many as the records or none). Hashing each entry and
    /// checking its encoding do not depend on the records before it, so large batches do that
    /// on every core first; the chain and the tree then follow in order.
    pub fn records(&mut self, records: &[AuditRecord], tree_leaves: Option<&[u8]>) -> Result<(), VerifyError> {
        self.prepared_records(records, Prepared::records(records), tree_leaves)
    }

    /// As `records`, with the records already prepared (`Prepared::records` of the same).
    pub fn prepared_records(
        &mut self,
        records: &[AuditRecord],
        prepared: Prepared,
        tree_leaves: Option<&[u8]>,
    ) -> Result<(), VerifyError> {
        debug_assert_eq!(records.len(), prepared.len(), "prepared from other records");
        for (i, (record, (leaf, decodes))) in records.iter().zip(prepared.0).enumerate() {
            let expected = self.range.size();
            if record.seq != expected {
                return Err(VerifyError::Gap { expected, found: record.seq });
            }
            self.chain = chain_hash_of_leaf(&self.chain, &leaf);
            if self.chain != record.chain_hash {
                decodes.map_err(|error| VerifyError::Undecodable { seq: expected, error })?;
                return Err(VerifyError::ChainMismatch { seq: expected });
            }
            self.join_tree(leaf, decodes, tree_leaves.and_then(|t| t.get(i * 32..i * 32 + 32)))?;
        }
        Ok(())
    }

    /// Checks the next entry (from a tile: no sequence number or chain hash travels with it).
    pub fn entry(&mut self, entry: &[u8], tree_leaf: Option<&Hash>) -> Result<(), VerifyError> {
        self.entries(Prepared::entries(&[entry]), tree_leaf.map(<[u8; 32]>::as_slice))
    }

    /// Checks the next entries in order, as `entry` would one by one.
    pub fn entries(&mut self, prepared: Prepared, tree_leaves: Option<&[u8]>) -> Result<(), VerifyError> {
        for (i, (leaf, decodes)) in prepared.0.into_iter().enumerate() {
            self.join_tree(leaf, decodes, tree_leaves.and_then(|t| t.get(i * 32..i * 32 + 32)))?;
        }
        Ok(())
    }

    /// The next record joins the tree: within the checkpoint, decodable, and with the leaf hash
    /// the tree holds for it, when the caller has that.
    fn join_tree(
        &mut self,
        leaf: Hash,
        decodes: Result<(), crate::DecodeError>,
        tree_leaf: Option<&[u8]>,
    ) -> Result<(), VerifyError> {
        let seq = self.range.size();
        if seq >= self.checkpoint.size {
            return Err(VerifyError::Beyond { size: self.checkpoint.size });
        }
        decodes.map_err(|error| VerifyError::Undecodable { seq, error })?;
        if tree_leaf.is_some_and(|t| t != leaf) {
            return Err(VerifyError::LeafMismatch { seq });
        }
        self.range.push(leaf, |_, _, _| {});
        Ok(())
    }

    /// After the last record: all the checkpoint's records were there and give its root.
    pub fn finish(self) -> Result<Checkpoint, VerifyError> {
        if self.range.size() < self.checkpoint.size {
            return Err(VerifyError::Truncated { found: self.range.size(), size: self.checkpoint.size });
        }
        if self.range.root() != self.checkpoint.root {
            return Err(VerifyError::RootMismatch { size: self.checkpoint.size });
        }
        Ok(self.checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain_hash;
    use crate::tests::chain;

    fn checkpoint_of(records: &[AuditRecord]) -> Checkpoint {
        let mut range = CompactRange::new();
        for r in records {
            range.push(leaf_hash(&r.entry), |_, _, _| {});
        }
        Checkpoint { origin: "test".into(), size: range.size(), root: range.root() }
    }

    fn verify(checkpoint: &Checkpoint, records: &[AuditRecord]) -> Result<Checkpoint, VerifyError> {
        let mut verifier = LogVerifier::new(checkpoint.clone());
        for r in records {
            verifier.record(r, None)?;
        }
        verifier.finish()
    }

    #[test]
    fn an_untouched_log_verifies() {
        let records = chain(300);
        let checkpoint = checkpoint_of(&records);
        assert_eq!(verify(&checkpoint, &records), Ok(checkpoint.clone()));
        // An older checkpoint verifies against its prefix.
        let old = checkpoint_of(&records[..100]);
        assert_eq!(verify(&old, &records[..100]), Ok(old));
    }

    #[test]
    fn each_kind_of_tampering_is_named_with_its_position() {
        let records = chain(300);
        let checkpoint = checkpoint_of(&records);

        let mut edited = records.clone();
        let at = edited[123].entry.len() - 3;
        edited[123].entry[at] ^= 0x20;
        assert_eq!(verify(&checkpoint, &edited), Err(VerifyError::ChainMismatch { seq: 123 }));

        let mut deleted = records.clone();
        deleted.remove(57);
        assert_eq!(verify(&checkpoint, &deleted), Err(VerifyError::Gap { expected: 57, found: 58 }));

        let mut reordered = records.clone();
        reordered.swap(200, 201);
        assert_eq!(verify(&checkpoint, &reordered), Err(VerifyError::Gap { expected: 200, found: 201 }));
        let (a, b) = (reordered[200].seq, reordered[201].seq);
        reordered[200].seq = b;
        reordered[201].seq = a;
        assert_eq!(verify(&checkpoint, &reordered), Err(VerifyError::ChainMismatch { seq: 200 }));

        assert_eq!(verify(&checkpoint, &records[..250]), Err(VerifyError::Truncated { found: 250, size: 300 }));

        // A rewritten log with a fresh, self-consistent chain still fails the checkpoint.
        let mut rewritten = chain(300);
        rewritten.truncate(299);
        let mut forged = chain(299);
        forged.extend(chain(1).into_iter().map(|mut r| {
            r.seq = 299;
            r.chain_hash = chain_hash(&rewritten[298].chain_hash, &r.entry);
            r
        }));
        assert!(matches!(verify(&checkpoint, &forged), Err(VerifyError::RootMismatch { size: 300 })));
    }

    #[test]
    fn a_leaf_the_tree_holds_differently_is_named() {
        let records = chain(10);
        let checkpoint = checkpoint_of(&records);
        let mut verifier = LogVerifier::new(checkpoint);
        for r in &records[..4] {
            verifier.entry(&r.entry, Some(&leaf_hash(&r.entry))).unwrap();
        }
        assert_eq!(verifier.entry(&records[4].entry, Some(&[0u8; 32])), Err(VerifyError::LeafMismatch { seq: 4 }));
    }

    #[test]
    fn a_large_batch_names_the_same_first_error_as_one_record_at_a_time() {
        let records = chain(5000);
        let checkpoint = checkpoint_of(&records);
        let leaves: Vec<u8> = records.iter().flat_map(|r| leaf_hash(&r.entry)).collect();
        let batch = |records: &[AuditRecord], leaves: Option<&[u8]>| {
            let mut verifier = LogVerifier::new(checkpoint.clone());
            verifier.records(records, leaves).and_then(|()| verifier.finish())
        };
        assert_eq!(batch(&records, Some(&leaves)), Ok(checkpoint.clone()));

        let mut edited = records.clone();
        edited[3210].entry[20] ^= 0x01;
        assert_eq!(batch(&edited, None), verify(&checkpoint, &edited));
        assert_eq!(batch(&edited, None), Err(VerifyError::ChainMismatch { seq: 3210 }));

        // Broken beyond decoding, with its chain hash made to match: named as undecodable.
        let mut garbled = records.clone();
        garbled[4001].entry = b"careid-audit/v1\nno-space-here\n".to_vec();
        let mut previous = garbled[4000].chain_hash;
        for r in &mut garbled[4001..] {
            r.chain_hash = crate::chain_hash(&previous, &r.entry);
            previous = r.chain_hash;
        }
        assert_eq!(batch(&garbled, None), verify(&checkpoint, &garbled));
        assert!(matches!(batch(&garbled, None), Err(VerifyError::Undecodable { seq: 4001, .. })));

        let mut other_leaves = leaves.clone();
        other_leaves[2500 * 32] ^= 0xff;
        assert_eq!(batch(&records, Some(&other_leaves)), Err(VerifyError::LeafMismatch { seq: 2500 }));

        // Bare entries (from tiles), in one batch, as one by one.
        let entries = |records: &[AuditRecord], leaves: Option<&[u8]>| {
            let entries: Vec<&[u8]> = records.iter().map(|r| r.entry.as_slice()).collect();
            let mut verifier = LogVerifier::new(checkpoint.clone());
            verifier.entries(Prepared::entries(&entries), leaves).and_then(|()| verifier.finish())
        };
        let one_by_one = |records: &[AuditRecord], leaves: Option<&[u8]>| {
            let mut verifier = LogVerifier::new(checkpoint.clone());
            for (i, r) in records.iter().enumerate() {
                let leaf = leaves.map(|l| <[u8; 32]>::try_from(&l[i * 32..i * 32 + 32]).unwrap());
                verifier.entry(&r.entry, leaf.as_ref())?;
            }
            verifier.finish()
        };
        assert_eq!(entries(&records, Some(&leaves)), Ok(checkpoint.clone()));
        for (records, leaves) in [(&records, Some(&other_leaves)), (&garbled, None), (&edited, None)] {
            let leaves = leaves.map(Vec::as_slice);
            assert_eq!(entries(records, leaves), one_by_one(records, leaves));
        }
        assert_eq!(entries(&records, Some(&other_leaves)), Err(VerifyError::LeafMismatch { seq: 2500 }));
        assert!(matches!(entries(&garbled, None), Err(VerifyError::Undecodable { seq: 4001, .. })));
        assert!(matches!(entries(&edited, None), Err(VerifyError::RootMismatch { size: 5000 })));
        assert!(matches!(entries(&records[..4000], None), Err(VerifyError::Truncated { found: 4000, size: 5000 })));
    }
}
