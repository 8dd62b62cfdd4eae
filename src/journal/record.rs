//! The on-disk format of one small write in a segment file (`docs/design/journal.md`,
//! "Segments"), and the ids that name records.
//!
//! A record is a 12-byte header, then the body:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `SJR1` |
//! | 4..8 | body length, u32 little-endian |
//! | 8..12 | CRC-32 (IEEE) of the length field and the body, u32 little-endian |
//! | 12.. | body |
//!
//! A crash while a batch is appended leaves a torn tail: a header cut short, a length
//! past the end of the file, or a checksum that does not match. [`parse`] tells each of
//! these from a whole record and never reads past what it was given, whatever the bytes.

/// Header bytes before the body.
pub const HEADER: usize = 12;
const MAGIC: &[u8; 4] = b"SJR1";

/// The record of `body`, header and all.
pub fn encode(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc(&len, body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn crc(len: &[u8; 4], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(body);
    h.finalize()
}

/// What [`parse`] found at the start of its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole record: its body, and the bytes it takes, header included.
    Whole(&'a [u8], usize),
    /// The input ends inside a record (a header or body cut short).
    Short,
    /// Not a record: a wrong magic or checksum.
    Bad,
}

/// Reads the record at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    if buf.len() < HEADER {
        return if MAGIC.starts_with(&buf[..buf.len().min(4)]) { Parsed::Short } else { Parsed::Bad };
    }
    if &buf[..4] != MAGIC {
        return Parsed::Bad;
    }
    let len: [u8; 4] = [buf[4], buf[5], buf[6], buf[7]];
    let want = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    let n = u32::from_le_bytes(len) as usize;
    let Some(body) = buf.get(HEADER..HEADER.saturating_add(n)) else { return Parsed::Short };
    if crc(&len, body) != want {
        return Parsed::Bad;
    }
    Parsed::Whole(body, HEADER + n)
}

/// The bytes of `buf` that whole records fill from its start: where a torn tail begins.
pub fn valid_prefix(buf: &[u8]) -> usize {
    let mut at = 0;
    while let Parsed::Whole(_, n) = parse(&buf[at..]) {
        at += n;
    }
    at
}

/// The id of the record at `offset` of segment `segment`: `r`, 16 hex digits of the
/// segment (random per segment, so ids are unique across nodes), 12 of the offset.
pub fn id(segment: u64, offset: u64) -> String {
    format!("r{segment:016x}{:012x}", offset & 0xffff_ffff_ffff)
}

/// The segment and offset an id names, when it names a record.
pub fn parse_id(id: &str) -> Option<(u64, u64)> {
    let hex = id.strip_prefix('r')?;
    if hex.len() != 28 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    Some((u64::from_str_radix(&hex[..16], 16).ok()?, u64::from_str_radix(&hex[16..], 16).ok()?))
}

/// The file name of segment `segment`.
pub fn file_name(segment: u64) -> String {
    format!("seg-{segment:016x}")
}

/// The segment a file name names.
pub fn segment_of(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("seg-")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_and_names_round_trip() {
        assert_eq!(parse_id(&id(0xdead_beef_0123_4567, 4096)), Some((0xdead_beef_0123_4567, 4096)));
        assert_eq!(id(1, 2).len(), 29);
        assert_eq!(parse_id("0123456789abcdef0123456789abcdef"), None, "a staging file's id");
        assert_eq!(parse_id("rXYZ"), None);
        assert_eq!(segment_of(&file_name(77)), Some(77));
        assert_eq!(segment_of("seg-1"), None);
    }

    proptest! {
        #[test]
        fn a_record_reads_back_whole(body in prop::collection::vec(any::<u8>(), 0..2048), tail in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = encode(&body);
            let n = buf.len();
            buf.extend_from_slice(&tail);
            prop_assert_eq!(parse(&buf), Parsed::Whole(&body, n));
        }

        #[test]
        fn a_torn_record_is_never_whole(body in prop::collection::vec(any::<u8>(), 0..2048), cut in any::<prop::sample::Index>()) {
            let rec = encode(&body);
            let at = cut.index(rec.len());
            prop_assert_eq!(parse(&rec[..at]), Parsed::Short);
        }

        #[test]
        fn a_flipped_byte_is_never_whole(body in prop::collection::vec(any::<u8>(), 1..512), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut rec = encode(&body);
            let i = at.index(rec.len());
            rec[i] ^= 1 << bit;
            // A flip in the length field may make the record look longer (Short) or
            // shorter; it is never taken for the record that was written.
            prop_assert!(!matches!(parse(&rec), Parsed::Whole(b, _) if b == body.as_slice()));
        }

        #[test]
        fn random_bytes_never_panic_and_stay_in_bounds(buf in prop::collection::vec(any::<u8>(), 0..4096)) {
            if let Parsed::Whole(body, n) = parse(&buf) {
                prop_assert!(n <= buf.len() && body.len() + HEADER == n);
            }
            prop_assert!(valid_prefix(&buf) <= buf.len());
        }

        #[test]
        fn the_valid_prefix_of_records_and_a_torn_tail_is_the_records(
            bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..8),
            torn in prop::collection::vec(any::<u8>(), 0..300),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut buf: Vec<u8> = bodies.iter().flat_map(|b| encode(b)).collect();
            let whole = buf.len();
            let last = encode(&torn);
            buf.extend_from_slice(&last[..cut.index(last.len())]);
            prop_assert_eq!(valid_prefix(&buf), whole);
        }
    }
}
