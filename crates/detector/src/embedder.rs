//! Sentence embeddings from a BERT-family ONNX model (all-MiniLM-L6-v2 by default).
//!
//! ONNX Runtime is loaded at run time from a shared library (`ort` with `load-dynamic`),
//! and the model runs on one dedicated OS thread: `Session::run` takes `&mut self` and
//! blocks for milliseconds, which must never happen on the async runtime. Callers talk to
//! that thread through a bounded channel, so a burst of requests waits for room instead of
//! queueing without limit (backpressure), and get their answer on a oneshot channel.
//!
//! On the thread, queued requests are drained into one work list, texts are sorted by
//! token count and cut into batches, each batch is padded only to its longest text
//! (truncation at [`EmbedderConfig::max_tokens`]), and the last hidden state is mean-pooled
//! over the attention mask and L2-normalised, as sentence-transformers does.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use tokenizers::Tokenizer;
use tokio::sync::{mpsc, oneshot};

/// Default model directory, relative to the repository root (what `make setup` fills).
pub const DEFAULT_MODEL_DIR: &str = ".cache/models/all-MiniLM-L6-v2";
/// Default ONNX Runtime library, relative to the repository root.
pub const DEFAULT_ORT_DYLIB: &str = ".cache/onnxruntime/libonnxruntime.so.1.31.1";
/// Environment variable overriding the model directory.
pub const MODEL_DIR_ENV: &str = "LOGCANARY_MODEL_DIR";
/// Environment variable overriding the ONNX Runtime library path.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

const FIX_HINT: &str =
    "run `make setup` (scripts/fetch-ml-assets.sh) or set LOGCANARY_MODEL_DIR / ORT_DYLIB_PATH";

/// Errors from starting or using the embedder.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    #[error("{what} not found at {path}; {FIX_HINT}")]
    MissingFile { what: &'static str, path: PathBuf },
    #[error("cannot load {what} from {path}: {reason}; {FIX_HINT}")]
    Load {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("model {path} is unusable: {reason}; {FIX_HINT}")]
    BadModel { path: PathBuf, reason: String },
    #[error("tokenizing failed: {0}")]
    Tokenize(String),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("the inference thread has stopped")]
    Stopped,
}

/// Where the model lives and how to run it. Build with [`EmbedderConfig::new`] or
/// [`EmbedderConfig::from_env`].
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedderConfig {
    /// Directory holding `model.onnx` and `tokenizer.json`.
    pub model_dir: PathBuf,
    /// The ONNX Runtime shared library (the versioned `libonnxruntime.so.1.x.y`).
    pub ort_dylib: PathBuf,
    /// Requests that may wait for the inference thread before senders block.
    pub queue_capacity: usize,
    /// Texts per `session.run`; 8-32 is the sweet spot on small CPUs.
    pub max_batch: usize,
    /// Most padded tokens (texts x longest text) per `session.run`: long texts go in
    /// smaller batches, so the attention buffers (texts x heads x tokens^2) stay small and
    /// resident memory stays bounded whatever the mix of lengths.
    pub max_batch_tokens: usize,
    /// Truncation length in tokens (sentence-transformers uses 256 for MiniLM).
    pub max_tokens: usize,
    /// ONNX Runtime intra-op threads.
    pub intra_threads: usize,
    /// ONNX Runtime's CPU memory arena and memory patterns. Off by default: with inputs
    /// of ever-changing shape (batch size x token count) the arena keeps growing to several
    /// hundred MiB for no measurable speed-up.
    pub memory_arena: bool,
}

impl EmbedderConfig {
    pub fn new(model_dir: impl Into<PathBuf>, ort_dylib: impl Into<PathBuf>) -> Self {
        Self {
            model_dir: model_dir.into(),
            ort_dylib: ort_dylib.into(),
            queue_capacity: 64,
            max_batch: 32,
            max_batch_tokens: 1024,
            max_tokens: 256,
            intra_threads: 1,
            memory_arena: false,
        }
    }

    /// Paths from `LOGCANARY_MODEL_DIR` and `ORT_DYLIB_PATH`, each falling back to its
    /// default under the repository root, found as the nearest ancestor of the current
    /// directory that has a `.cache/` directory (else the current directory itself).
    pub fn from_env() -> Self {
        Self::with_defaults(env_path(MODEL_DIR_ENV), env_path(ORT_DYLIB_ENV))
    }

    /// The given paths, each falling back to its default under the repository root (see
    /// [`EmbedderConfig::from_env`]); binaries pass what clap read from
    /// `LOGCANARY_MODEL_DIR` / `ORT_DYLIB_PATH`.
    pub fn with_defaults(model_dir: Option<PathBuf>, ort_dylib: Option<PathBuf>) -> Self {
        let root = default_root();
        let model_dir = model_dir.unwrap_or_else(|| root.join(DEFAULT_MODEL_DIR));
        let ort_dylib = ort_dylib.unwrap_or_else(|| root.join(DEFAULT_ORT_DYLIB));
        Self::new(model_dir, ort_dylib)
    }

    pub fn model_path(&self) -> PathBuf {
        self.model_dir.join("model.onnx")
    }

    pub fn tokenizer_path(&self) -> PathBuf {
        self.model_dir.join("tokenizer.json")
    }
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn default_root() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    cwd.ancestors()
        .find(|dir| dir.join(".cache").is_dir())
        .map(Path::to_path_buf)
        .unwrap_or(cwd)
}

struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>,
}

/// Handle to the inference thread. Cheap to share by reference; dropping the last handle
/// closes the channel and the thread exits after finishing queued work.
pub struct Embedder {
    sender: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    dim: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").field("dim", &self.dim).finish()
    }
}

impl Embedder {
    /// Load the runtime, tokenizer and model and start the inference thread.
    ///
    /// Blocks while loading (about 0.3 s for MiniLM): call it at start-up, or from
    /// `spawn_blocking`. Every missing or broken file is an error naming its path.
    pub fn start(config: EmbedderConfig) -> Result<Self, EmbedError> {
        for (what, path) in [
            ("ONNX Runtime library", config.ort_dylib.clone()),
            ("model", config.model_path()),
            ("tokenizer", config.tokenizer_path()),
        ] {
            if !path.is_file() {
                return Err(EmbedError::MissingFile { what, path });
            }
        }
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (sender, receiver) = mpsc::channel::<Job>(config.queue_capacity.max(1));
        let thread = std::thread::Builder::new()
            .name("logcanary-embedder".into())
            .spawn(move || match Worker::load(&config) {
                Ok((worker, dim)) => {
                    let _ = ready_tx.send(Ok(dim));
                    worker.run(receiver);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| EmbedError::Inference(format!("cannot spawn inference thread: {e}")))?;
        let dim = ready_rx.recv().map_err(|_| EmbedError::Stopped)??;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
            dim,
        })
    }

    /// Embedding width (384 for MiniLM).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Embed `texts`; the result has one L2-normalised vector per text, in order.
    ///
    /// Waits for room in the queue when the inference thread is behind. Cancel-safe:
    /// dropping the future abandons the answer; the work may still run.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let sender = self.sender.as_ref().ok_or(EmbedError::Stopped)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Job { texts, reply })
            .await
            .map_err(|_| EmbedError::Stopped)?;
        answer.await.map_err(|_| EmbedError::Stopped)?
    }

    /// Blocking twin of [`Embedder::embed`] for synchronous callers (tests, the eval
    /// harness, `spawn_blocking`). Panics if called from within an async runtime thread,
    /// as tokio's blocking channel operations do.
    pub fn embed_blocking(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let sender = self.sender.as_ref().ok_or(EmbedError::Stopped)?;
        let (reply, answer) = oneshot::channel();
        sender
            .blocking_send(Job { texts, reply })
            .map_err(|_| EmbedError::Stopped)?;
        answer.blocking_recv().map_err(|_| EmbedError::Stopped)?
    }
}

impl Drop for Embedder {
    fn drop(&mut self) {
        // Closing the channel ends the thread's receive loop once queued jobs are done.
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// ONNX Runtime allows one environment per process, ever (a second `build()` fails even
/// after the first is dropped), so every embedder shares one, kept for the process's life.
/// The library is loaded once too: the first successfully loaded path wins and later
/// configs' `ort_dylib` is ignored.
static ENVIRONMENT: std::sync::Mutex<Option<ort::environment::Environment>> =
    std::sync::Mutex::new(None);

/// The process's ONNX Runtime environment, loading the library from `dylib` the first
/// time. Public for benchmarks that build their own session beside an [`Embedder`].
pub fn shared_environment(dylib: &Path) -> Result<ort::environment::Environment, EmbedError> {
    let load_error = |reason: String| EmbedError::Load {
        what: "ONNX Runtime library",
        path: dylib.to_path_buf(),
        reason,
    };
    // A poisoned lock only means another thread panicked while loading; the Option inside
    // is still either a usable environment or None.
    let mut slot = ENVIRONMENT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(environment) = slot.as_ref() {
        return Ok(environment.clone());
    }
    // `init_from` (not `init`) so a missing or incompatible library is an error here
    // rather than a panic on first use.
    let environment = ort::init_from(dylib)
        .map_err(|e| load_error(e.to_string()))?
        .with_name("logcanary")
        .build()
        .map_err(|e| load_error(e.to_string()))?;
    *slot = Some(environment.clone());
    Ok(environment)
}

/// Lives on the inference thread only.
struct Worker {
    session: ort::session::Session,
    tokenizer: Tokenizer,
    wants_token_types: bool,
    /// `last_hidden_state` when the model has it, else its first output.
    output_name: String,
    max_batch: usize,
    max_batch_tokens: usize,
    dim: usize,
}

impl Worker {
    fn load(config: &EmbedderConfig) -> Result<(Self, usize), EmbedError> {
        let load_error = |what: &'static str, path: &Path, reason: String| EmbedError::Load {
            what,
            path: path.to_path_buf(),
            reason,
        };
        let environment = shared_environment(&config.ort_dylib)?;

        let model_path = config.model_path();
        // Builder errors carry the builder and are not `Send`: turn them into strings now.
        let session = ort::session::Session::builder(&environment)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                b.with_intra_threads(config.intra_threads.max(1))
                    .map_err(|e| e.to_string())
            })
            .and_then(|b| {
                b.with_memory_pattern(config.memory_arena)
                    .map_err(|e| e.to_string())
            })
            .and_then(|b| {
                b.with_execution_providers([ort::ep::CPU::default()
                    .with_arena_allocator(config.memory_arena)
                    .build()])
                    .map_err(|e| e.to_string())
            })
            .and_then(|mut b| b.commit_from_file(&model_path).map_err(|e| e.to_string()))
            .map_err(|reason| load_error("model", &model_path, reason))?;

        let input_names: Vec<String> = session
            .inputs()
            .iter()
            .map(|i| i.name().to_string())
            .collect();
        for required in ["input_ids", "attention_mask"] {
            if !input_names.iter().any(|n| n == required) {
                return Err(EmbedError::BadModel {
                    path: model_path.clone(),
                    reason: format!("no `{required}` input (inputs: {input_names:?})"),
                });
            }
        }
        let wants_token_types = input_names.iter().any(|n| n == "token_type_ids");
        let output_names: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        let output_name = if output_names.contains(&"last_hidden_state") {
            "last_hidden_state".to_string()
        } else {
            match output_names.first() {
                Some(name) => name.to_string(),
                None => {
                    return Err(EmbedError::BadModel {
                        path: model_path.clone(),
                        reason: "the model has no outputs".into(),
                    })
                }
            }
        };

        let tokenizer_path = config.tokenizer_path();
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| load_error("tokenizer", &tokenizer_path, e.to_string()))?;
        // The upstream tokenizer.json pads every input to 128 tokens; we pad per batch.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: config.max_tokens.max(2),
                ..Default::default()
            }))
            .map_err(|e| load_error("tokenizer", &tokenizer_path, e.to_string()))?;

        let mut worker = Self {
            session,
            tokenizer,
            wants_token_types,
            output_name,
            max_batch: config.max_batch.max(1),
            max_batch_tokens: config.max_batch_tokens.max(1),
            dim: 0,
        };
        // One probe run tells the embedding width and proves the model actually runs.
        let probe = worker
            .embed_all(&["probe".to_string()])
            .map_err(|e| EmbedError::BadModel {
                path: model_path.clone(),
                reason: e.to_string(),
            })?;
        let dim = probe.first().map(Vec::len).unwrap_or(0);
        if dim == 0 {
            return Err(EmbedError::BadModel {
                path: model_path,
                reason: "the model produced an empty embedding".into(),
            });
        }
        worker.dim = dim;
        Ok((worker, dim))
    }

    fn run(mut self, mut receiver: mpsc::Receiver<Job>) {
        while let Some(first) = receiver.blocking_recv() {
            // Take whatever else is already queued so small requests share batches.
            let mut jobs = vec![first];
            let mut queued: usize = jobs[0].texts.len();
            while queued < self.max_batch * 4 {
                match receiver.try_recv() {
                    Ok(job) => {
                        queued += job.texts.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            let texts: Vec<String> = jobs.iter().flat_map(|j| j.texts.iter().cloned()).collect();
            match self.embed_all(&texts) {
                Ok(mut vectors) => {
                    // Hand each job its slice, in order.
                    let mut rest = vectors.drain(..);
                    for job in jobs {
                        let mine: Vec<Vec<f32>> = rest.by_ref().take(job.texts.len()).collect();
                        let _ = job.reply.send(Ok(mine));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, texts = texts.len(), "Embedding batch failed.");
                    for job in jobs {
                        let _ = job.reply.send(Err(e.clone()));
                    }
                }
            }
        }
        tracing::debug!("Embedder channel closed; inference thread exiting.");
    }

    /// Embed all texts: tokenize, sort by length, run in batches, restore order.
    fn embed_all(&mut self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut encodings = Vec::with_capacity(texts.len());
        for text in texts {
            let encoding = self
                .tokenizer
                .encode(text.as_str(), true)
                .map_err(|e| EmbedError::Tokenize(e.to_string()))?;
            encodings.push(encoding);
        }
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());

        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        // In length order, so the last text of a chunk is its longest.
        let mut start = 0;
        while start < order.len() {
            let mut end = start + 1;
            while end < order.len()
                && end - start < self.max_batch
                && (end - start + 1) * encodings[order[end]].get_ids().len()
                    <= self.max_batch_tokens
            {
                end += 1;
            }
            let chunk = &order[start..end];
            let batch: Vec<&tokenizers::Encoding> = chunk.iter().map(|&i| &encodings[i]).collect();
            let vectors = self.run_batch(&batch)?;
            for (&i, v) in chunk.iter().zip(vectors) {
                out[i] = v;
            }
            start = end;
        }
        Ok(out)
    }

    fn run_batch(&mut self, batch: &[&tokenizers::Encoding]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let rows = batch.len();
        let seq = batch
            .iter()
            .map(|e| e.get_ids().len())
            .max()
            .unwrap_or(0)
            .max(1);
        let mut ids = vec![0i64; rows * seq];
        let mut mask = vec![0i64; rows * seq];
        let mut types = vec![0i64; rows * seq];
        for (r, encoding) in batch.iter().enumerate() {
            let base = r * seq;
            for (c, ((&id, &m), &t)) in encoding
                .get_ids()
                .iter()
                .zip(encoding.get_attention_mask())
                .zip(encoding.get_type_ids())
                .enumerate()
            {
                ids[base + c] = i64::from(id);
                mask[base + c] = i64::from(m);
                types[base + c] = i64::from(t);
            }
        }
        let shape = vec![rows as i64, seq as i64];
        let tensor = |data: Vec<i64>| {
            ort::value::Tensor::from_array((shape.clone(), data))
                .map_err(|e| EmbedError::Inference(e.to_string()))
        };
        let mut inputs = vec![
            ("input_ids", tensor(ids)?.into_dyn()),
            ("attention_mask", tensor(mask.clone())?.into_dyn()),
        ];
        if self.wants_token_types {
            inputs.push(("token_type_ids", tensor(types)?.into_dyn()));
        }
        let outputs = self
            .session
            .run(inputs)
            .map_err(|e| EmbedError::Inference(e.to_string()))?;
        let hidden = outputs
            .get(&self.output_name)
            .ok_or_else(|| EmbedError::Inference(format!("no `{}` output", self.output_name)))?;
        let (out_shape, data) = hidden
            .try_extract_tensor::<f32>()
            .map_err(|e| EmbedError::Inference(e.to_string()))?;
        let dims: Vec<i64> = out_shape.iter().copied().collect();
        let hidden_dim = match dims.as_slice() {
            [b, s, h] if *b as usize == rows && *s as usize == seq => *h as usize,
            _ => {
                return Err(EmbedError::Inference(format!(
                    "expected output [batch {rows}, seq {seq}, hidden], got {dims:?}"
                )))
            }
        };
        Ok((0..rows)
            .map(|r| {
                mean_pool_normalise(
                    &data[r * seq * hidden_dim..(r + 1) * seq * hidden_dim],
                    &mask[r * seq..(r + 1) * seq],
                    hidden_dim,
                )
            })
            .collect())
    }
}

/// Mean of the token vectors where the mask is 1, then scaled to unit length.
fn mean_pool_normalise(hidden: &[f32], mask: &[i64], dim: usize) -> Vec<f32> {
    let mut sum = vec![0f32; dim];
    let mut count = 0f32;
    for (token, &m) in hidden.chunks_exact(dim).zip(mask) {
        if m != 0 {
            count += 1.0;
            for (s, &h) in sum.iter_mut().zip(token) {
                *s += h;
            }
        }
    }
    let count = count.max(1e-9);
    for s in &mut sum {
        *s /= count;
    }
    normalise(&mut sum);
    sum
}

/// Scale to unit L2 norm (a zero vector stays zero).
pub fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 1e-12 {
        for x in v {
            *x /= norm;
        }
    }
}

/// Cosine similarity; for unit vectors this is their dot product. 0 for empty or
/// mismatched vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na < 1e-12 || nb < 1e-12 {
        0.0
    } else {
        dot / (na * nb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_ignores_padding_and_normalises() {
        // Two tokens of width 2, the second is padding.
        let hidden = [3.0, 4.0, 100.0, 100.0];
        let v = mean_pool_normalise(&hidden, &[1, 0], 2);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn cosine_of_parallel_and_orthogonal_vectors() {
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-6);
        assert_eq!(cosine(&[1.0], &[1.0, 2.0]), 0.0);
    }

    #[test]
    fn missing_files_name_the_path_and_the_fix() {
        let config =
            EmbedderConfig::new("/nonexistent/model-dir", "/nonexistent/libonnxruntime.so");
        let err = Embedder::start(config).expect_err("start must fail");
        let text = err.to_string();
        assert!(text.contains("/nonexistent/libonnxruntime.so"), "{text}");
        assert!(text.contains("make setup"), "{text}");
    }
}
