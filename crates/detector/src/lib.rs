//! The logcanary detector: decides whether a log line is anomalous and says why.
//!
//! It masks variable parts of messages ([`masking`]), mines templates online
//! ([`drain`]), embeds template text with a BERT sentence model through ONNX Runtime
//! ([`embedder`]), and gives every template one verdict from its state: its prior (level,
//! meaning, semantic novelty), steady presence learned over time, or an operator's label
//! on it or on close templates ([`scorer`]). [`review`] ranks the templates an operator
//! should answer first. [`eval`] measures template mining against labelled samples;
//! [`replay`] replays labelled log files through the scorer (the `logcanary-eval` binary),
//! with a simulated operator answering the review queue, and counts precision, recall and
//! F1.
//!
//! This crate has no network or database code: callers feed it lines and persist the state
//! it exports (templates, embeddings, feedback). The only files it reads are the model,
//! tokenizer and ONNX Runtime library it is pointed at, and evaluation samples.

pub mod drain;
pub mod embedder;
pub mod eval;
pub mod line_header;
pub mod masking;
pub mod patterns;
pub mod replay;
pub mod review;
pub mod scorer;
