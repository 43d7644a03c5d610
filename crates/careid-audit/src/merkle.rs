//! The Merkle tree of RFC 9162 (section 2.1) over the log's leaf hashes: tree hashes, inclusion
//! and consistency proofs, and their verification.
//!
//! Proofs are built from the hashes of *perfect* subtrees (2^level leaves starting at a multiple
//! of 2^level), the only ones a log stores. Whoever holds them implements [`HashReader`]; the
//! tiles of `tiles.rs` are one such reader.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// RFC 9162: the hash of an interior node, SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree, SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Where the hashes of perfect subtrees come from.
pub trait HashReader {
    type Error;
    /// The hash of the perfect subtree of 2^level leaves starting at leaf `index << level`.
    fn hash(&mut self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// Why a proof cannot be made or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf {index} is not in a tree of {size} leaves")]
    OutOfRange { index: u64, size: u64 },
    #[error("a tree of {old} leaves cannot be a prefix of a tree of {new}")]
    Shrunk { old: u64, new: u64 },
    #[error("the proof has {found} hashes where {expected} are needed")]
    WrongLength { expected: usize, found: usize },
    #[error("the proof does not lead to the root")]
    RootMismatch,
}

/// The largest power of two strictly below `n` (n >= 2).
fn split(n: u64) -> u64 {
    1 << (n - 1).ilog2()
}

/// The hash of leaves `[lo, hi)`, `hi > lo`, as RFC 9162's MTH of that range; `lo` must start a
/// subtree of the full tree (which every recursion of MTH, PATH and SUBPROOF guarantees).
pub fn subtree_hash<R: HashReader>(reader: &mut R, lo: u64, hi: u64) -> Result<Hash, R::Error> {
    // The range splits into perfect subtrees, largest first; fold them from the right.
    let mut parts: Vec<Hash> = Vec::with_capacity(64);
    let mut at = lo;
    while at < hi {
        let remaining = hi - at;
        let mut level = remaining.ilog2();
        if at != 0 {
            level = level.min(at.trailing_zeros());
        }
        parts.push(reader.hash(level as u8, at >> level)?);
        at += 1 << level;
    }
    let mut root = parts.pop().unwrap_or_else(empty_root);
    while let Some(left) = parts.pop() {
        root = node_hash(&left, &root);
    }
    Ok(root)
}

/// The root of a tree of `size` leaves.
pub fn tree_hash<R: HashReader>(reader: &mut R, size: u64) -> Result<Hash, R::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    subtree_hash(reader, 0, size)
}

/// RFC 9162 PATH(m, D[n]): the inclusion proof of leaf `index` in a tree of `size` leaves.
pub fn inclusion_proof<R: HashReader>(
    reader: &mut R,
    index: u64,
    size: u64,
) -> Result<Result<Vec<Hash>, ProofError>, R::Error> {
    if index >= size {
        return Ok(Err(ProofError::OutOfRange { index, size }));
    }
    let mut proof = Vec::new();
    // Walk down from the root, remembering the sibling at each split; the proof runs leaf-up.
    let (mut lo, mut hi, m) = (0u64, size, index);
    while hi - lo > 1 {
        let k = split(hi - lo);
        if m < lo + k {
            proof.push(subtree_hash(reader, lo + k, hi)?);
            hi = lo + k;
        } else {
            proof.push(subtree_hash(reader, lo, lo + k)?);
            lo += k;
        }
    }
    proof.reverse();
    Ok(Ok(proof))
}

/// RFC 9162 PROOF(m, D[n]): the consistency proof from a tree of `old` leaves to one of `new`.
pub fn consistency_proof<R: HashReader>(
    reader: &mut R,
    old: u64,
    new: u64,
) -> Result<Result<Vec<Hash>, ProofError>, R::Error> {
    if old > new {
        return Ok(Err(ProofError::Shrunk { old, new }));
    }
    if old == 0 || old == new {
        return Ok(Ok(Vec::new()));
    }
    let mut proof = Vec::new();
    // SUBPROOF(m, D[lo:hi], b), iteratively; `complete` is b.
    let (mut lo, mut hi, m, mut complete) = (0u64, new, old, true);
    loop {
        if m == hi {
            if !complete {
                proof.push(subtree_hash(reader, lo, hi)?);
            }
            break;
        }
        let k = split(hi - lo);
        if m <= lo + k {
            proof.push(subtree_hash(reader, lo + k, hi)?);
            hi = lo + k;
        } else {
            proof.push(subtree_hash(reader, lo, lo + k)?);
            lo += k;
            complete = false;
        }
    }
    proof.reverse();
    Ok(Ok(proof))
}

/// RFC 9162 section 2.1.3.2: checks that `leaf` is leaf `index` of the tree of `size` with `root`.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange { index, size });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength { expected: inclusion_length(index, size), found: proof.len() });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength { expected: inclusion_length(index, size), found: proof.len() });
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// How many hashes the inclusion proof of `index` in a tree of `size` holds.
fn inclusion_length(index: u64, size: u64) -> usize {
    let (mut lo, mut hi, mut n) = (0u64, size, 0usize);
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            hi = lo + k;
        } else {
            lo += k;
        }
        n += 1;
    }
    n
}

/// RFC 9162 section 2.1.4.2: checks that the tree of `old` leaves with `old_root` is a prefix of
/// the tree of `new` leaves with `new_root`.
pub fn verify_consistency(
    old: u64,
    new: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::Shrunk { old, new });
    }
    if old == new {
        return if proof.is_empty() && old_root == new_root {
            Ok(())
        } else if !proof.is_empty() {
            Err(ProofError::WrongLength { expected: 0, found: proof.len() })
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if old == 0 {
        // Every tree extends the empty one.
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength { expected: 0, found: proof.len() })
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength { expected: 1, found: 0 });
    };
    let (mut fn_, mut sn) = (old - 1, new - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return Err(ProofError::WrongLength { expected: path.len() - 1, found: proof.len() });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength { expected: path.len(), found: proof.len() });
    }
    if &fr != old_root || &sr != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The right edge of a growing tree: the roots of its maximal perfect subtrees, largest first.
/// Appending a leaf costs one hash amortised; it reports each perfect subtree it completes, so
/// a log can store the hashes proofs need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    /// (level, hash) of each maximal perfect subtree, left to right.
    edge: Vec<(u8, Hash)>,
}

impl CompactRange {
    pub fn new() -> Self {
        Self::default()
    }

    /// The compact range of the first `size` leaves, from the stored hashes.
    pub fn at<R: HashReader>(reader: &mut R, size: u64) -> Result<Self, R::Error> {
        let mut edge = Vec::new();
        let mut at = 0u64;
        while at < size {
            let level = (size - at).ilog2();
            edge.push((level as u8, reader.hash(level as u8, at >> level)?));
            at += 1 << level;
        }
        Ok(Self { size, edge })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; `completed(level, index, hash)` sees the leaf itself (level 0) and
    /// every perfect subtree it completes.
    pub fn push(&mut self, leaf: Hash, mut completed: impl FnMut(u8, u64, &Hash)) {
        let index = self.size;
        completed(0, index, &leaf);
        let mut node = (0u8, leaf);
        while let Some(&(level, left)) = self.edge.last() {
            if level != node.0 {
                break;
            }
            self.edge.pop();
            let parent = node_hash(&left, &node.1);
            node = (level + 1, parent);
            completed(node.0, index >> node.0, &parent);
        }
        self.edge.push(node);
        self.size += 1;
    }

    /// The tree's root.
    pub fn root(&self) -> Hash {
        let mut iter = self.edge.iter().rev();
        let Some(&(_, mut root)) = iter.next() else { return empty_root() };
        for (_, left) in iter {
            root = node_hash(left, &root);
        }
        root
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::convert::Infallible;

    use super::*;
    use crate::leaf_hash;

    /// MTH straight from RFC 9162's recursive definition.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    #[derive(Default)]
    struct Memory(HashMap<(u8, u64), Hash>);

    impl HashReader for Memory {
        type Error = Infallible;
        fn hash(&mut self, level: u8, index: u64) -> Result<Hash, Infallible> {
            Ok(*self.0.get(&(level, index)).unwrap_or_else(|| panic!("no stored hash at level {level} index {index}")))
        }
    }

    fn tree(n: u64) -> (Vec<Hash>, Memory, CompactRange) {
        let mut memory = Memory::default();
        let mut range = CompactRange::new();
        let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(format!("entry {i}").as_bytes())).collect();
        for leaf in &leaves {
            range.push(*leaf, |level, index, hash| {
                memory.0.insert((level, index), *hash);
            });
        }
        (leaves, memory, range)
    }

    #[test]
    fn roots_match_the_recursive_definition_at_every_size() {
        let (leaves, mut memory, _) = tree(70);
        for n in 0..=70u64 {
            let expected = reference_root(&leaves[..n as usize]);
            assert_eq!(tree_hash(&mut memory, n).unwrap(), expected, "size {n}");
            assert_eq!(CompactRange::at(&mut memory, n).unwrap().root(), expected, "compact range at {n}");
        }
    }

    #[test]
    fn known_root_of_the_rfc6962_test_vectors() {
        // The eight inputs of the Certificate Transparency test vectors and their root.
        let inputs: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let mut range = CompactRange::new();
        for input in inputs {
            range.push(leaf_hash(input), |_, _, _| {});
        }
        assert_eq!(hex::encode(range.root()), "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328");
    }

    #[test]
    fn every_inclusion_proof_verifies_and_a_wrong_one_does_not() {
        let (leaves, mut memory, _) = tree(37);
        for size in 1..=37u64 {
            let root = tree_hash(&mut memory, size).unwrap();
            for index in 0..size {
                let proof = inclusion_proof(&mut memory, index, size).unwrap().unwrap();
                assert_eq!(verify_inclusion(&leaves[index as usize], index, size, &proof, &root), Ok(()));
                let other = leaves[((index + 1) % 37) as usize];
                if size > 1 {
                    assert_eq!(verify_inclusion(&other, index, size, &proof, &root), Err(ProofError::RootMismatch));
                }
                if !proof.is_empty() {
                    assert!(verify_inclusion(&leaves[index as usize], index, size, &proof[1..], &root).is_err());
                }
            }
        }
        assert_eq!(inclusion_proof(&mut memory, 5, 5).unwrap(), Err(ProofError::OutOfRange { index: 5, size: 5 }));
    }

    #[test]
    fn every_consistency_proof_verifies_and_a_rewritten_history_does_not() {
        let (_, mut memory, _) = tree(33);
        for new in 0..=33u64 {
            let new_root = tree_hash(&mut memory, new).unwrap();
            for old in 0..=new {
                let old_root = tree_hash(&mut memory, old).unwrap();
                let proof = consistency_proof(&mut memory, old, new).unwrap().unwrap();
                assert_eq!(verify_consistency(old, new, &proof, &old_root, &new_root), Ok(()), "{old} -> {new}");
                if old > 0 && old < new {
                    let forged = leaf_hash(b"a different past");
                    assert!(verify_consistency(old, new, &proof, &forged, &new_root).is_err(), "{old} -> {new}");
                }
            }
        }
        assert_eq!(consistency_proof(&mut memory, 4, 3).unwrap(), Err(ProofError::Shrunk { old: 4, new: 3 }));
    }
}
