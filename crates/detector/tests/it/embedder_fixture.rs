//! The embedder against reference embeddings computed independently (Python
//! onnxruntime, one line at a time, by scripts/gen_embedding_fixture.py).
//!
//! Runs the real model: `make setup` / scripts/fetch-ml-assets.sh must have run.

use logcanary_detector::embedder::{cosine, Embedder, EmbedderConfig};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    dims: usize,
    lines: Vec<Line>,
}

#[derive(Deserialize)]
struct Line {
    text: String,
    embedding: Vec<f32>,
}

fn load_fixture() -> Fixture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/embeddings_minilm.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture file is committed");
    serde_json::from_str(&text).expect("fixture is valid JSON")
}

fn start() -> Embedder {
    Embedder::start(EmbedderConfig::from_env())
        .unwrap_or_else(|e| panic!("embedder did not start: {e}"))
}

#[test]
fn matches_reference_embeddings_in_one_padded_batch() {
    let fixture = load_fixture();
    let embedder = start();
    assert_eq!(embedder.dim(), fixture.dims);
    // All lines in one request: mixed lengths, so sorting, padding and truncation all run.
    let texts: Vec<String> = fixture.lines.iter().map(|l| l.text.clone()).collect();
    let vectors = embedder.embed_blocking(texts).expect("embedding succeeds");
    assert_eq!(vectors.len(), fixture.lines.len());
    for (line, v) in fixture.lines.iter().zip(&vectors) {
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-4,
            "{:?} not normalised: {norm}",
            line.text
        );
        let c = cosine(&v[..line.embedding.len()], &line.embedding);
        assert!(c >= 0.999, "{:?}: cosine {c} < 0.999", line.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_async_requests_get_their_own_answers() {
    let fixture = load_fixture();
    let embedder = std::sync::Arc::new(start());
    let mut tasks = Vec::new();
    for line in fixture.lines.iter().take(8) {
        let embedder = embedder.clone();
        let text = line.text.clone();
        tasks.push(tokio::spawn(
            async move { embedder.embed(vec![text]).await },
        ));
    }
    for (task, line) in tasks.into_iter().zip(&fixture.lines) {
        let vectors = task.await.expect("task ran").expect("embedding succeeds");
        let c = cosine(&vectors[0], &line.embedding);
        assert!(c >= 0.999, "{:?}: cosine {c} < 0.999", line.text);
    }
}
