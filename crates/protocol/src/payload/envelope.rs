//! The gzip envelope of a payload chunk, in both directions: one gzip member, its CRC and size checked, bounded in
//! decompressed size so that a small chunk cannot expand into a memory exhaustion, and UTF-8 inside.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::bufread::GzDecoder;
use flate2::write::GzEncoder;

use super::error::{PayloadError, PayloadErrorKind};
use super::model::{Payload, ReadLimits};
use super::statements::read_sql;

/// Decompresses one chunk within the limits and reads it.
pub fn read_payload(gz: &[u8], limits: &ReadLimits) -> Result<Payload, PayloadError> {
    let text = open(gz, limits.max_decompressed_bytes)?;
    read_sql(&text, &limits.allowed_tables)
}

/// Compresses a chunk's header and body as one gzip member.
pub(super) fn seal(header: &str, body: &str, level: u32) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::with_capacity(body.len() / 4 + 64), Compression::new(level));
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(header.as_bytes());
    let _ = gz.write_all(body.as_bytes());
    gz.finish().unwrap_or_default()
}

/// The text of one chunk: a single gzip member whose trailer matches, at most `max_bytes` decompressed, UTF-8.
/// Errors are about the chunk as a whole (statement 0).
fn open(gz: &[u8], max_bytes: usize) -> Result<String, PayloadError> {
    let whole = |kind| PayloadError { statement: 0, kind, excerpt: String::new() };
    let mut decoder = GzDecoder::new(gz);
    let mut text = Vec::new();
    let cap = max_bytes as u64;
    (&mut decoder).take(cap + 1).read_to_end(&mut text).map_err(|_| whole(PayloadErrorKind::BadGzip))?;
    if text.len() as u64 > cap {
        return Err(whole(PayloadErrorKind::TooLarge { limit: max_bytes }));
    }
    // A single gzip member is the whole chunk: anything after it is not ours to ignore. (The bufread decoder
    // over a slice leaves exactly the unread rest in it.)
    if !decoder.into_inner().is_empty() {
        return Err(whole(PayloadErrorKind::BadGzip));
    }
    // Check the trailer ourselves as well, so integrity does not rest on a decoder detail.
    let mut crc = flate2::Crc::new();
    crc.update(&text);
    let trailer = gz.len().checked_sub(8).map(|i| &gz[i..]).ok_or_else(|| whole(PayloadErrorKind::BadGzip))?;
    let expected_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let expected_len = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
    if crc.sum() != expected_crc || text.len() as u32 != expected_len {
        return Err(whole(PayloadErrorKind::BadGzip));
    }
    String::from_utf8(text).map_err(|_| whole(PayloadErrorKind::NotUtf8))
}
