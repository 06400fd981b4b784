//! Undoing a request's Content-Encoding within a size limit.
//!
//! A few kilobytes of gzip can expand to gigabytes, so nothing is decompressed in one go:
//! every decoder is read in 64 KiB steps into a buffer that never grows past the limit,
//! and the call fails with [`DecodeError::TooLarge`] the moment the output would exceed
//! it. Snappy blocks state their length up front, which is checked before allocating; a
//! zstd frame declaring a window larger than the limit is refused before its window is
//! allocated.

use std::io::Read;

use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};

use crate::{entry, DecodeError};

const CHUNK: usize = 64 * 1024;
/// The snappy framing format's stream identifier chunk.
const SNAPPY_FRAMED_MAGIC: &[u8] = b"\xff\x06\x00\x00sNaPpY";
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Undoes `content_encoding` on `body`; the output is at most `max_bytes`.
///
/// `None`, `""` and `identity` return the body as it is; `gzip`/`x-gzip` (concatenated
/// members too), `deflate` (zlib, or raw deflate as some clients send it), `snappy` (raw
/// block, or the framing format when the body starts with its stream identifier),
/// `x-snappy-framed`, and `zstd` are undone. A comma-separated list is undone last one
/// first. Case and surrounding spaces are ignored.
///
/// Never holds more than `max_bytes` of output plus one 64 KiB read buffer. For zstd the
/// decoder also holds the frame's window, which must be at most `max_bytes` (a frame
/// declaring a larger one is refused with [`DecodeError::TooLarge`] before allocating);
/// encoders use 8 MiB or less, so keep `max_bytes` at 8 MiB or more to take their zstd.
///
/// # Errors
///
/// [`DecodeError::UnsupportedEncoding`] for any other encoding, [`DecodeError::TooLarge`]
/// when the output would exceed `max_bytes`, [`DecodeError::Malformed`] when the body is
/// not valid in its encoding.
pub fn decompress(
    content_encoding: Option<&str>,
    body: &[u8],
    max_bytes: usize,
) -> Result<Vec<u8>, DecodeError> {
    let codings: Vec<String> = content_encoding
        .unwrap_or("")
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    for coding in &codings {
        check_known(coding)?;
    }
    let Some((last, earlier)) = codings.split_last() else {
        return identity(body, max_bytes);
    };
    let mut data = undo(last, body, max_bytes)?;
    for coding in earlier.iter().rev() {
        data = undo(coding, &data, max_bytes)?;
    }
    Ok(data)
}

fn check_known(coding: &str) -> Result<(), DecodeError> {
    match coding {
        "gzip" | "x-gzip" | "deflate" | "snappy" | "x-snappy-framed" | "zstd" => Ok(()),
        other => Err(DecodeError::UnsupportedEncoding(format!(
            "unsupported Content-Encoding '{}': use gzip, deflate, snappy, zstd or identity",
            entry::clip(other, 60)
        ))),
    }
}

fn undo(coding: &str, body: &[u8], max_bytes: usize) -> Result<Vec<u8>, DecodeError> {
    match coding {
        "gzip" | "x-gzip" => read_bounded(MultiGzDecoder::new(body), max_bytes, "gzip"),
        "deflate" if looks_like_zlib(body) => {
            read_bounded(ZlibDecoder::new(body), max_bytes, "deflate")
        }
        "deflate" => read_bounded(DeflateDecoder::new(body), max_bytes, "deflate"),
        "snappy" if body.starts_with(SNAPPY_FRAMED_MAGIC) => snappy_framed(body, max_bytes),
        "snappy" => snappy_block(body, max_bytes),
        "x-snappy-framed" => snappy_framed(body, max_bytes),
        "zstd" => zstd(body, max_bytes),
        other => Err(DecodeError::UnsupportedEncoding(format!(
            "unsupported Content-Encoding '{}'",
            entry::clip(other, 60)
        ))),
    }
}

fn identity(body: &[u8], max_bytes: usize) -> Result<Vec<u8>, DecodeError> {
    if body.len() > max_bytes {
        return Err(too_large(max_bytes));
    }
    Ok(body.to_vec())
}

fn too_large(max_bytes: usize) -> DecodeError {
    DecodeError::TooLarge(format!(
        "the decompressed body exceeds the limit of {max_bytes} bytes"
    ))
}

/// A zlib stream starts with CMF/FLG: method 8 (deflate) and a header checksum.
fn looks_like_zlib(body: &[u8]) -> bool {
    match body {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

/// Reads all of `reader`, failing as soon as more than `max_bytes` come out. The buffer
/// grows by doubling but never beyond `max_bytes`, so a bomb costs at most the limit.
pub(crate) fn read_bounded(
    mut reader: impl Read,
    max_bytes: usize,
    what: &str,
) -> Result<Vec<u8>, DecodeError> {
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(DecodeError::Malformed(entry::short(format_args!(
                    "the body is not valid {what}: {e}"
                ))))
            }
        };
        let needed = out.len() + n;
        if needed > max_bytes {
            return Err(too_large(max_bytes));
        }
        if needed > out.capacity() {
            let target = (out.capacity() * 2).max(needed).max(CHUNK).min(max_bytes);
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

pub(crate) fn snappy_block(body: &[u8], max_bytes: usize) -> Result<Vec<u8>, DecodeError> {
    let len = snap::raw::decompress_len(body).map_err(|e| snappy_error(&e))?;
    if len > max_bytes {
        return Err(too_large(max_bytes));
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| snappy_error(&e))
}

fn snappy_framed(body: &[u8], max_bytes: usize) -> Result<Vec<u8>, DecodeError> {
    read_bounded(snap::read::FrameDecoder::new(body), max_bytes, "snappy")
}

fn snappy_error(e: &snap::Error) -> DecodeError {
    DecodeError::Malformed(entry::short(format_args!(
        "the body is not valid snappy: {e}"
    )))
}

/// Decodes every zstd frame in `body` in turn (skippable frames included), within the limit.
fn zstd(body: &[u8], max_bytes: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        if !rest.starts_with(ZSTD_MAGIC) && !is_skippable_frame(rest) {
            return Err(DecodeError::Malformed(
                "the body is not valid zstd: a frame does not start with the zstd magic number"
                    .into(),
            ));
        }
        let mut source = rest;
        let left = max_bytes - out.len();
        let frame = zstd_frame(&mut source, left, max_bytes)?;
        out.extend_from_slice(&frame);
        rest = source;
    }
    Ok(out)
}

fn is_skippable_frame(data: &[u8]) -> bool {
    matches!(data, [m, 0x2a, 0x4d, 0x18, ..] if m & 0xf0 == 0x50)
}

fn zstd_frame(source: &mut &[u8], left: usize, max_bytes: usize) -> Result<Vec<u8>, DecodeError> {
    use ruzstd::decoding::errors::FrameDecoderError;
    let window = u64::try_from(max_bytes.max(1024)).unwrap_or(u64::MAX);
    match ruzstd::decoding::StreamingDecoder::new_with_max_window_size(&mut *source, window) {
        Ok(decoder) => read_bounded(decoder, left, "zstd").map_err(|e| match e {
            DecodeError::TooLarge(_) => too_large(max_bytes),
            other => other,
        }),
        Err(FrameDecoderError::WindowSizeTooBig { requested, .. }) => Err(DecodeError::TooLarge(
            format!("the zstd frame asks for a {requested}-byte window, more than the limit of {max_bytes} bytes"),
        )),
        Err(FrameDecoderError::ReadFrameHeaderError(
            ruzstd::decoding::errors::ReadFrameHeaderError::SkipFrame { length, .. },
        )) => {
            let skip = usize::try_from(length).unwrap_or(usize::MAX).min(source.len());
            *source = &source[skip..];
            Ok(Vec::new())
        }
        Err(e) => Err(DecodeError::Malformed(entry::short(format_args!(
            "the body is not valid zstd: {e}"
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).expect("in memory");
        enc.finish().expect("in memory")
    }

    #[test]
    fn the_buffer_never_grows_past_the_limit() {
        let data = vec![7u8; 1_000_000];
        let out = read_bounded(&data[..], 1_000_000, "test").expect("fits exactly");
        assert_eq!(out.len(), 1_000_000);
        assert!(out.capacity() <= 1_000_000, "{}", out.capacity());
        let err = read_bounded(&data[..], 999_999, "test").expect_err("one byte over");
        assert!(matches!(err, DecodeError::TooLarge(_)));
    }

    #[test]
    fn identity_bodies_are_bounded_too() {
        assert_eq!(decompress(Some("identity"), b"abc", 3), Ok(b"abc".to_vec()));
        assert!(matches!(
            decompress(None, b"abcd", 3),
            Err(DecodeError::TooLarge(_))
        ));
    }

    #[test]
    fn a_list_of_encodings_is_undone_last_first() {
        let inner = gzip(b"hello");
        let outer = snap::raw::Encoder::new()
            .compress_vec(&inner)
            .expect("in memory");
        assert_eq!(
            decompress(Some("gzip, snappy"), &outer, 1024),
            Ok(b"hello".to_vec())
        );
    }

    #[test]
    fn zlib_and_raw_deflate_are_both_taken_as_deflate() {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(b"zlib body").expect("in memory");
        let z = z.finish().expect("in memory");
        assert_eq!(
            decompress(Some("deflate"), &z, 1024),
            Ok(b"zlib body".to_vec())
        );
        let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        d.write_all(b"raw body").expect("in memory");
        let d = d.finish().expect("in memory");
        assert_eq!(
            decompress(Some("DEFLATE"), &d, 1024),
            Ok(b"raw body".to_vec())
        );
    }

    #[test]
    fn snappy_block_and_framed_bodies_are_undone() {
        let block = snap::raw::Encoder::new()
            .compress_vec(b"block body")
            .expect("in memory");
        assert_eq!(
            decompress(Some("snappy"), &block, 1024),
            Ok(b"block body".to_vec())
        );
        let mut framed = snap::write::FrameEncoder::new(Vec::new());
        framed.write_all(b"framed body").expect("in memory");
        let framed = framed.into_inner().expect("in memory");
        assert_eq!(
            decompress(Some("snappy"), &framed, 1024),
            Ok(b"framed body".to_vec())
        );
        assert_eq!(
            decompress(Some("x-snappy-framed"), &framed, 1024),
            Ok(b"framed body".to_vec())
        );
        let big = snap::raw::Encoder::new()
            .compress_vec(&[0u8; 10_000])
            .expect("in memory");
        assert!(matches!(
            decompress(Some("snappy"), &big, 9_999),
            Err(DecodeError::TooLarge(_))
        ));
    }

    #[test]
    fn zstd_frames_are_undone_within_the_limit() {
        let payload = b"zstd body ".repeat(20_000);
        let frame = ruzstd::encoding::compress_to_vec(
            &payload[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let mut two = frame.clone();
        two.extend_from_slice(&frame);
        assert_eq!(
            decompress(Some("zstd"), &frame, 1 << 20),
            Ok(payload.clone())
        );
        assert_eq!(
            decompress(Some("zstd"), &two, 1 << 20).map(|v| v.len()),
            Ok(400_000)
        );
        assert!(matches!(
            decompress(Some("zstd"), &two, 300_000),
            Err(DecodeError::TooLarge(_))
        ));
        // A window larger than the limit is refused before it is allocated.
        assert!(matches!(
            decompress(Some("zstd"), &frame, 4096),
            Err(DecodeError::TooLarge(_))
        ));
        assert!(matches!(
            decompress(Some("zstd"), b"not zstd", 4096),
            Err(DecodeError::Malformed(_))
        ));
    }
}
