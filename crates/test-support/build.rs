//! Hashes `crates/db/migrations/**` (paths and contents) into `LOGCANARY_MIGRATIONS_HASH`,
//! so that the template database of [`TestDb`] is named after the migrations it holds:
//! a changed migration gets a template of its own.

use std::{
    env, fs,
    path::{Path, PathBuf},
};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// FNV-1a, 64 bits: stable across toolchains (unlike `DefaultHasher`), no dependency.
fn fnv1a(hash: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *hash ^= u64::from(*b);
        *hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
}

fn main() {
    let dir =
        Path::new(&env::var("CARGO_MANIFEST_DIR").expect("set by cargo")).join("../db/migrations");
    // A directory: cargo re-runs this script when anything under it changes.
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut paths = Vec::new();
    files(&dir, &mut paths);
    paths.sort();
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for path in paths {
        let relative = path
            .strip_prefix(&dir)
            .expect("under the migrations directory");
        fnv1a(&mut hash, relative.to_string_lossy().as_bytes());
        fnv1a(&mut hash, &[0]);
        fnv1a(
            &mut hash,
            &fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())),
        );
        fnv1a(&mut hash, &[0]);
    }
    println!("cargo:rustc-env=LOGCANARY_MIGRATIONS_HASH={hash:016x}");
}
