//! Fails when `src/gen/` differs from what `proto/` generates, so the checked-in code
//! never drifts from the schema. With `LOGCANARY_REGENERATE=1` it rewrites `src/gen/`
//! instead. The library must still compile for this test to run: after renaming or
//! removing a message, fix `src/task.rs` along with the proto.

use std::path::{Path, PathBuf};

const GENERATED: &str = "logcanary.tasks.v1.rs";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn generate(out_dir: &Path) {
    let proto_root = workspace_root().join("proto");
    let file = proto_root.join("logcanary/tasks/v1/tasks.proto");
    let fds = protox::compile([&file], [&proto_root])
        .unwrap_or_else(|e| panic!("{} does not compile: {e:?}", file.display()));
    prost_build::Config::new()
        .out_dir(out_dir)
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("prost-build failed: {e}"));
}

#[test]
fn generated_code_matches_proto() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    generate(tmp.path());

    let fresh_path = tmp.path().join(GENERATED);
    let fresh = std::fs::read_to_string(&fresh_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", fresh_path.display()));
    let checked_in_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/gen")
        .join(GENERATED);
    let checked_in = std::fs::read_to_string(&checked_in_path).unwrap_or_default();

    if fresh == checked_in {
        return;
    }
    if std::env::var("LOGCANARY_REGENERATE").is_ok_and(|v| v == "1") {
        std::fs::write(&checked_in_path, &fresh)
            .unwrap_or_else(|e| panic!("writing {}: {e}", checked_in_path.display()));
        eprintln!("regenerated {}", checked_in_path.display());
        return;
    }
    panic!(
        "{} is out of date with proto/. Regenerate it with\n\n    \
         LOGCANARY_REGENERATE=1 cargo test -p logcanary-contracts --test proto_drift\n\n\
         and commit the result.",
        checked_in_path.display()
    );
}
