//! The on-disk format of one hot chunk file (see `docs/design/hot-tier.md`).
//!
//! A file is a self-describing header followed by the chunk's bytes. The header names the
//! object version the bytes belong to, so the index can be rebuilt from the files alone, and
//! carries a CRC32 per 64 KiB block, so a reader checks every block before sending it.
//! This file only encodes and decodes; it does no I/O.
//!
//! ```text
//! magic      8   "STRATAH\x01"
//! hdr_len    u32 total header length, including this field and the trailing CRC
//! chunk_len  u64 bytes of data after the header
//! obj_size   u64 size of the whole object
//! chunk_idx  u32 which chunk of the object (offset = idx * chunk_size)
//! chunk_size u32 the chunk size in force when the file was written
//! block_size u32 bytes per checksummed block
//! mtime      i64 the version's last-modified time (ms)
//! bucket, key, etag   u16 length + UTF-8 bytes each
//! crcs       u32 count + one CRC32 per block
//! hdr_crc    u32 CRC32 of every header byte before it
//! ```
//! All integers are little-endian.

/// Magic bytes that open every chunk file; the last byte is the format version.
pub const MAGIC: &[u8; 8] = b"STRATAH\x01";
/// Bytes per checksummed block.
pub const BLOCK_SIZE: u32 = 64 << 10;

/// Which version of which object a chunk file holds, and where in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChunkHeader {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// The version's ETag.
    pub etag: String,
    /// The version's last-modified time, ms since the Unix epoch.
    pub mtime_ms: i64,
    /// Size of the whole object.
    pub obj_size: u64,
    /// Index of this chunk.
    pub chunk_idx: u32,
    /// Chunk size used to cut the object.
    pub chunk_size: u32,
    /// Bytes of data in this file.
    pub chunk_len: u64,
    /// Bytes per checksummed block.
    pub block_size: u32,
    /// CRC32 of each block of data, in order.
    pub crcs: Vec<u32>,
}

/// Number of blocks needed for `len` bytes.
pub fn block_count(len: u64, block_size: u32) -> u64 {
    len.div_ceil(u64::from(block_size.max(1)))
}

impl ChunkHeader {
    /// The encoded length of this header, known before the CRCs are: the data offset.
    pub fn encoded_len(&self) -> u64 {
        let fixed = 8 + 4 + 8 + 8 + 4 + 4 + 4 + 8 + 6 + 4 + 4;
        let strings = self.bucket.len() + self.key.len() + self.etag.len();
        (fixed + strings) as u64 + 4 * block_count(self.chunk_len, self.block_size)
    }

    /// Encodes the header. `crcs` must hold one CRC per block.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(usize::try_from(self.encoded_len()).unwrap_or(0));
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&u32::try_from(self.encoded_len()).unwrap_or(u32::MAX).to_le_bytes());
        b.extend_from_slice(&self.chunk_len.to_le_bytes());
        b.extend_from_slice(&self.obj_size.to_le_bytes());
        b.extend_from_slice(&self.chunk_idx.to_le_bytes());
        b.extend_from_slice(&self.chunk_size.to_le_bytes());
        b.extend_from_slice(&self.block_size.to_le_bytes());
        b.extend_from_slice(&self.mtime_ms.to_le_bytes());
        for s in [&self.bucket, &self.key, &self.etag] {
            // Bucket names, keys (1024 bytes) and ETags are far below u16::MAX.
            b.extend_from_slice(&u16::try_from(s.len()).unwrap_or(u16::MAX).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        }
        b.extend_from_slice(&u32::try_from(self.crcs.len()).unwrap_or(u32::MAX).to_le_bytes());
        for c in &self.crcs {
            b.extend_from_slice(&c.to_le_bytes());
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// The header length announced by the first 12 bytes of a file, if they start one.
    pub fn peek_len(prefix: &[u8]) -> Option<usize> {
        if prefix.len() < 12 || &prefix[..8] != MAGIC {
            return None;
        }
        let n = u32::from_le_bytes(prefix[8..12].try_into().ok()?);
        usize::try_from(n).ok()
    }

    /// Decodes a header from exactly its encoded bytes. Any inconsistency is `None`: the
    /// caller drops the file.
    pub fn decode(buf: &[u8]) -> Option<ChunkHeader> {
        let total = Self::peek_len(buf)?;
        if total != buf.len() || total < 16 {
            return None;
        }
        let (body, crc) = buf.split_at(total - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut r = Reader { buf: body, pos: 12 };
        let chunk_len = r.u64()?;
        let obj_size = r.u64()?;
        let chunk_idx = r.u32()?;
        let chunk_size = r.u32()?;
        let block_size = r.u32()?;
        let mtime_ms = i64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let bucket = r.string()?;
        let key = r.string()?;
        let etag = r.string()?;
        let n = r.u32()?;
        if block_size == 0 || u64::from(n) != block_count(chunk_len, block_size) {
            return None;
        }
        let crcs = (0..n).map(|_| r.u32()).collect::<Option<Vec<_>>>()?;
        if r.pos != body.len() || chunk_len > obj_size {
            return None;
        }
        let h =
            ChunkHeader { bucket, key, etag, mtime_ms, obj_size, chunk_idx, chunk_size, chunk_len, block_size, crcs };
        (h.encoded_len() == total as u64).then_some(h)
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let n = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
        String::from_utf8(self.take(usize::from(n))?.to_vec()).ok()
    }
}

/// Computes per-block CRCs of data arriving in pieces of any size.
#[derive(Debug, Default)]
pub struct BlockHasher {
    block_size: u64,
    in_block: u64,
    cur: crc32fast::Hasher,
    done: Vec<u32>,
}

impl BlockHasher {
    /// A hasher for blocks of `block_size` bytes.
    pub fn new(block_size: u32) -> Self {
        Self { block_size: u64::from(block_size.max(1)), ..Default::default() }
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = usize::try_from(self.block_size - self.in_block).unwrap_or(usize::MAX);
            let (now, rest) = data.split_at(room.min(data.len()));
            self.cur.update(now);
            self.in_block += now.len() as u64;
            if self.in_block == self.block_size {
                let full = std::mem::take(&mut self.cur);
                self.done.push(full.finalize());
                self.in_block = 0;
            }
            data = rest;
        }
    }

    /// The CRCs of all blocks, the last one possibly short.
    pub fn finish(mut self) -> Vec<u32> {
        if self.in_block > 0 {
            self.done.push(self.cur.finalize());
        }
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(len: u64) -> ChunkHeader {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut h = BlockHasher::new(BLOCK_SIZE);
        h.update(&data);
        ChunkHeader {
            bucket: "photos".into(),
            key: "2024/cat é.jpg".into(),
            etag: "0123456789abcdef0123456789abcdef".into(),
            mtime_ms: 1_700_000_000_123,
            obj_size: len * 3,
            chunk_idx: 2,
            chunk_size: 8 << 20,
            chunk_len: len,
            block_size: BLOCK_SIZE,
            crcs: h.finish(),
        }
    }

    #[test]
    fn round_trip_and_length() {
        for len in [0, 1, u64::from(BLOCK_SIZE), u64::from(BLOCK_SIZE) + 1, 300_000] {
            let h = sample(len);
            let enc = h.encode();
            assert_eq!(enc.len() as u64, h.encoded_len());
            assert_eq!(ChunkHeader::peek_len(&enc), Some(enc.len()));
            assert_eq!(ChunkHeader::decode(&enc), Some(h));
        }
    }

    #[test]
    fn any_flipped_bit_is_rejected() {
        let enc = sample(200_000).encode();
        for i in 0..enc.len() {
            let mut bad = enc.clone();
            bad[i] ^= 0x10;
            assert_eq!(ChunkHeader::decode(&bad), None, "flip at byte {i}");
        }
    }

    #[test]
    fn hasher_is_independent_of_piece_sizes() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 13) as u8).collect();
        let mut one = BlockHasher::new(BLOCK_SIZE);
        one.update(&data);
        let mut many = BlockHasher::new(BLOCK_SIZE);
        for piece in data.chunks(777) {
            many.update(piece);
        }
        let crcs = one.finish();
        assert_eq!(crcs.len(), 4);
        assert_eq!(crcs, many.finish());
        assert_eq!(crcs[0], crc32fast::hash(&data[..BLOCK_SIZE as usize]));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = ChunkHeader::decode(&bytes);
            let _ = ChunkHeader::peek_len(&bytes);
        }

        #[test]
        fn decode_of_mangled_magic_prefixed_input_never_panics(
            tail in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut b = MAGIC.to_vec();
            b.extend_from_slice(&((tail.len() + 12) as u32).to_le_bytes());
            b.extend_from_slice(&tail);
            let _ = ChunkHeader::decode(&b);
        }

        #[test]
        fn round_trips(len in 0u64..400_000, idx in any::<u32>(), key in "[a-z/é]{1,40}", mtime in any::<i64>()) {
            let mut h = sample(len);
            h.chunk_idx = idx;
            h.key = key;
            h.mtime_ms = mtime;
            prop_assert_eq!(ChunkHeader::decode(&h.encode()), Some(h));
        }
    }
}
