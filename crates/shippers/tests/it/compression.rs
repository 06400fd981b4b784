use std::io::Write;

use shippers::{decompress, DecodeError};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("in memory");
    encoder.finish().expect("in memory")
}

#[test]
fn gzip_bodies_are_undone() {
    let body = gzip(b"{\"streams\":[]}");
    for encoding in ["gzip", "x-gzip", " GZIP "] {
        assert_eq!(
            decompress(Some(encoding), &body, 1024),
            Ok(b"{\"streams\":[]}".to_vec())
        );
    }
}

#[test]
fn a_gzip_bomb_is_refused_as_too_large() {
    // 100 MiB of zeros, compressed as it is written (about 100 KiB of gzip).
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..100 {
        encoder.write_all(&zeros).expect("in memory");
    }
    let bomb = encoder.finish().expect("in memory");
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());

    let err = decompress(Some("gzip"), &bomb, 1 << 20).expect_err("over the limit");

    assert!(matches!(err, DecodeError::TooLarge(_)), "{err:?}");
}

#[test]
fn an_unknown_encoding_is_unsupported() {
    for encoding in ["br", "compress", "gzip, lz4"] {
        assert!(matches!(
            decompress(Some(encoding), b"data", 1024),
            Err(DecodeError::UnsupportedEncoding(_))
        ));
    }
}

#[test]
fn a_corrupt_gzip_body_is_malformed() {
    let mut body = gzip(b"hello world, hello world");
    body.truncate(body.len() / 2);
    assert!(matches!(
        decompress(Some("gzip"), &body, 1024),
        Err(DecodeError::Malformed(_))
    ));
    assert!(matches!(
        decompress(Some("gzip"), b"plain", 1024),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn no_encoding_passes_the_body_through() {
    assert_eq!(decompress(None, b"as is", 5), Ok(b"as is".to_vec()));
    assert_eq!(
        decompress(Some("identity"), b"as is", 5),
        Ok(b"as is".to_vec())
    );
}
