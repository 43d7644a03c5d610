//! The C2SP `tlog-tiles` layout: tile paths, entry bundles, and reading the tree's hashes back
//! from tiles.
//!
//! A tile holds up to 256 consecutive hashes of one tile level: level 0 holds leaf hashes, level
//! 1 the roots of the perfect subtrees of 256 leaves, and so on (tile height 8). A tile that is
//! not yet full is served as `.p/<width>`; it only ever grows, so a partial tile is a prefix of
//! every later version of it.

use std::collections::HashMap;

use crate::merkle::{Hash, HashReader, node_hash};

/// Hashes per full tile (2^height).
pub const TILE_WIDTH: u64 = 256;
/// Tree levels a tile level spans.
pub const TILE_HEIGHT: u8 = 8;

/// `N` as tlog-tiles writes it: three-digit groups, all but the last prefixed with `x`.
fn index_path(index: u64) -> String {
    let digits = format!("{index}");
    let padded = format!("{}{digits}", "0".repeat((3 - digits.len() % 3) % 3));
    let groups: Vec<&str> = padded.as_bytes().chunks(3).map(|c| std::str::from_utf8(c).unwrap_or("000")).collect();
    let last = groups.len() - 1;
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| if i < last { format!("x{g}") } else { (*g).to_owned() })
        .collect::<Vec<_>>()
        .join("/")
}

/// Which tile a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRef {
    /// `None` for an entry bundle, else the tile level.
    pub level: Option<u8>,
    pub index: u64,
    /// 1..=256.
    pub width: u64,
}

impl TileRef {
    /// The path under the log's prefix: `tile/0/x001/234`, `tile/entries/005.p/17`.
    pub fn path(&self) -> String {
        let level = self.level.map_or("entries".to_owned(), |l| l.to_string());
        let partial = if self.width < TILE_WIDTH { format!(".p/{}", self.width) } else { String::new() };
        format!("tile/{level}/{}{partial}", index_path(self.index))
    }

    /// Parses what [`TileRef::path`] writes (and nothing else: no leading zeros beyond the
    /// padding, no `.p/256`).
    pub fn parse(path: &str) -> Option<Self> {
        let rest = path.strip_prefix("tile/")?;
        let (level, rest) = rest.split_once('/')?;
        let level = match level {
            "entries" => None,
            l if l.len() <= 2 && l.bytes().all(|b| b.is_ascii_digit()) => {
                Some(l.parse::<u8>().ok().filter(|l| *l < 64)?)
            }
            _ => return None,
        };
        let (index_part, width) = match rest.split_once(".p/") {
            Some((index, width)) => {
                let w: u64 = width.parse().ok().filter(|w| (1..TILE_WIDTH).contains(w))?;
                (width == w.to_string()).then_some((index, w))?
            }
            None => (rest, TILE_WIDTH),
        };
        let groups: Vec<&str> = index_part.split('/').collect();
        let mut index: u64 = 0;
        for (i, group) in groups.iter().enumerate() {
            let digits = if i + 1 < groups.len() { group.strip_prefix('x')? } else { group };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            index = index.checked_mul(1000)?.checked_add(digits.parse::<u64>().ok()?)?;
        }
        let tile = Self { level, index, width };
        (tile.path() == path).then_some(tile)
    }

    /// The width this tile has in a tree of `size` leaves (0 if it does not exist yet).
    pub fn width_at(level: Option<u8>, index: u64, size: u64) -> u64 {
        let hashes = size >> (u32::from(level.unwrap_or(0)) * u32::from(TILE_HEIGHT));
        hashes.saturating_sub(index * TILE_WIDTH).min(TILE_WIDTH)
    }
}

/// An entry bundle: each entry as a big-endian 16-bit length and its bytes.
pub fn encode_bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>, BundleError> {
    let mut out = Vec::new();
    for entry in entries {
        let len = u16::try_from(entry.len()).map_err(|_| BundleError::TooLong(entry.len()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(entry);
    }
    Ok(out)
}

/// The entries of a bundle.
pub fn decode_bundle(mut bundle: &[u8]) -> Result<Vec<&[u8]>, BundleError> {
    let mut entries = Vec::new();
    while !bundle.is_empty() {
        let [a, b, rest @ ..] = bundle else { return Err(BundleError::Truncated) };
        let len = usize::from(u16::from_be_bytes([*a, *b]));
        if rest.len() < len {
            return Err(BundleError::Truncated);
        }
        entries.push(&rest[..len]);
        bundle = &rest[len..];
    }
    Ok(entries)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("an entry of {0} bytes is longer than a bundle can hold (65,535)")]
    TooLong(usize),
    #[error("the entry bundle ends inside an entry")]
    Truncated,
}

/// Where tiles come from: a database, files, or a log's HTTP server.
pub trait TileSource {
    type Error;
    /// The hashes of tile `(level, index)` at `width`, concatenated (32 bytes each).
    fn tile(&mut self, level: u8, index: u64, width: u64) -> Result<Vec<u8>, Self::Error>;
}

/// Tiles held in memory, each at its full stored width; a narrower read gets the prefix.
#[derive(Debug, Default, Clone)]
pub struct MemoryTiles(pub HashMap<(u8, u64), Vec<u8>>);

impl TileSource for MemoryTiles {
    type Error = String;
    fn tile(&mut self, level: u8, index: u64, width: u64) -> Result<Vec<u8>, String> {
        let path = TileRef { level: Some(level), index, width }.path();
        let stored = self.0.get(&(level, index)).ok_or_else(|| format!("tile {path} is missing"))?;
        stored.get(..width as usize * 32).map(<[u8]>::to_vec).ok_or_else(|| format!("tile {path} is short"))
    }
}

/// The tree's hashes read from tiles, for a tree of `size` leaves; tiles fetched once.
#[derive(Debug)]
pub struct TiledHashes<S: TileSource> {
    source: S,
    size: u64,
    cache: HashMap<(u8, u64), Vec<u8>>,
}

/// Why a hash could not be read from tiles.
#[derive(Debug, thiserror::Error)]
pub enum TileError<E> {
    #[error(transparent)]
    Source(E),
    #[error("tile {0} is {1} bytes, not {2}")]
    WrongSize(String, usize, usize),
    #[error("no hash at level {level} index {index} in a tree of {size} leaves")]
    Beyond { level: u8, index: u64, size: u64 },
}

impl<S: TileSource> TiledHashes<S> {
    pub fn new(source: S, size: u64) -> Self {
        Self { source, size, cache: HashMap::new() }
    }

    pub fn into_source(self) -> S {
        self.source
    }

    fn tile(&mut self, level: u8, index: u64) -> Result<&[u8], TileError<S::Error>> {
        let width = TileRef::width_at(Some(level), index, self.size);
        if !self.cache.contains_key(&(level, index)) {
            let bytes = self.source.tile(level, index, width).map_err(TileError::Source)?;
            let expected = width as usize * 32;
            if bytes.len() != expected {
                let path = TileRef { level: Some(level), index, width }.path();
                return Err(TileError::WrongSize(path, bytes.len(), expected));
            }
            self.cache.insert((level, index), bytes);
        }
        Ok(self.cache.get(&(level, index)).map(Vec::as_slice).unwrap_or_default())
    }
}

impl<S: TileSource> HashReader for TiledHashes<S> {
    type Error = TileError<S::Error>;

    fn hash(&mut self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        let beyond = TileError::Beyond { level, index, size: self.size };
        if index
            .checked_shl(u32::from(level))
            .and_then(|first| first.checked_add(1 << level))
            .is_none_or(|end| end > self.size)
        {
            return Err(beyond);
        }
        // The node spans 2^r hashes of tile level `tile_level`, starting at `first`.
        let (tile_level, r) = (level / TILE_HEIGHT, level % TILE_HEIGHT);
        let first = index << r;
        let (tile_index, offset) = (first / TILE_WIDTH, (first % TILE_WIDTH) as usize);
        let tile = self.tile(tile_level, tile_index)?;
        let count = 1usize << r;
        let Some(slice) = tile.get(offset * 32..(offset + count) * 32) else { return Err(beyond) };
        let mut hashes: Vec<Hash> = slice.chunks_exact(32).map(|c| <Hash>::try_from(c).unwrap_or([0; 32])).collect();
        while hashes.len() > 1 {
            hashes = hashes.chunks_exact(2).map(|pair| node_hash(&pair[0], &pair[1])).collect();
        }
        Ok(hashes[0])
    }
}

/// Builds tiles as leaves are appended: feed it what [`crate::merkle::CompactRange::push`]
/// reports, and it keeps each touched tile.
#[derive(Debug, Default)]
pub struct TileWriter {
    /// (tile level, tile index) -> hashes so far.
    pub tiles: HashMap<(u8, u64), Vec<u8>>,
}

impl TileWriter {
    /// Starts from the tiles already stored that will grow (the rightmost at each level).
    pub fn with_open_tiles(tiles: impl IntoIterator<Item = ((u8, u64), Vec<u8>)>) -> Self {
        Self { tiles: tiles.into_iter().collect() }
    }

    /// Records a completed node if it is on a tile level.
    pub fn completed(&mut self, level: u8, index: u64, hash: &Hash) {
        if level % TILE_HEIGHT != 0 {
            return;
        }
        let tile = self.tiles.entry((level / TILE_HEIGHT, index / TILE_WIDTH)).or_default();
        let offset = (index % TILE_WIDTH) as usize * 32;
        tile.truncate(offset);
        tile.extend_from_slice(hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaf_hash;
    use crate::merkle::{CompactRange, inclusion_proof, tree_hash, verify_inclusion};

    #[test]
    fn paths_follow_tlog_tiles() {
        let tile = |level, index, width| TileRef { level, index, width };
        assert_eq!(tile(Some(0), 0, 256).path(), "tile/0/000");
        assert_eq!(tile(Some(0), 1_234_067, 256).path(), "tile/0/x001/x234/067");
        assert_eq!(tile(Some(1), 5, 17).path(), "tile/1/005.p/17");
        assert_eq!(tile(None, 1000, 256).path(), "tile/entries/x001/000");
        for t in [tile(Some(0), 1_234_067, 256), tile(Some(2), 0, 1), tile(None, 999, 255), tile(None, 1_000_000, 3)] {
            assert_eq!(TileRef::parse(&t.path()), Some(t));
        }
        for bad in [
            "tile/0/1",
            "tile/0/x1/000",
            "tile/0/000.p/256",
            "tile/0/000.p/0",
            "tile/0/000.p/07",
            "tile/x/000",
            "log/0/000",
        ] {
            assert_eq!(TileRef::parse(bad), None, "{bad}");
        }
        assert_eq!(TileRef::width_at(Some(0), 1, 300), 44);
        assert_eq!(TileRef::width_at(Some(1), 0, 300), 1);
        assert_eq!(TileRef::width_at(Some(1), 0, 255), 0);
    }

    #[test]
    fn bundles_round_trip_and_refuse_truncation() {
        let entries: Vec<&[u8]> = vec![b"one", b"", b"three"];
        let bundle = encode_bundle(entries.iter().copied()).unwrap();
        assert_eq!(&bundle[..5], b"\x00\x03one");
        assert_eq!(decode_bundle(&bundle).unwrap(), entries);
        assert_eq!(decode_bundle(&bundle[..bundle.len() - 1]), Err(BundleError::Truncated));
        assert_eq!(encode_bundle([vec![0u8; 70_000].as_slice()]), Err(BundleError::TooLong(70_000)));
    }

    #[test]
    fn hashes_read_from_tiles_give_the_same_roots_and_proofs() {
        let mut writer = TileWriter::default();
        let mut range = CompactRange::new();
        let leaves: Vec<Hash> = (0..70_000u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut roots = Vec::new();
        for leaf in &leaves {
            range.push(*leaf, |level, index, hash| writer.completed(level, index, hash));
            roots.push(range.root());
        }
        assert!(writer.tiles.contains_key(&(2, 0)), "70,000 leaves reach tile level 2");
        for size in [1u64, 255, 256, 257, 65_535, 65_536, 65_537, 70_000] {
            let mut hashes = TiledHashes::new(MemoryTiles(writer.tiles.clone()), size);
            let root = tree_hash(&mut hashes, size).unwrap();
            assert_eq!(root, roots[size as usize - 1], "size {size}");
            for index in [0, size / 2, size - 1] {
                let proof = inclusion_proof(&mut hashes, index, size).unwrap().unwrap();
                assert_eq!(verify_inclusion(&leaves[index as usize], index, size, &proof, &root), Ok(()));
            }
        }
    }
}
