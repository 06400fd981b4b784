//! Detector benchmarks: embedding throughput against a plain `session.run` loop, lines/s
//! through the whole detector on the 13 Loghub samples interleaved, and resident memory.
//!
//! `cargo run -p logcanary-detector --release --example bench_detector [-- --lines N] [LOGHUB_DIR]`
//! (scripts/bench-detector.sh runs it pinned to one core). Prints `key: value` lines and a
//! final JSON object.

use std::path::PathBuf;
use std::time::Instant;

use logcanary_detector::embedder::{shared_environment, Embedder, EmbedderConfig};
use logcanary_detector::eval::{loghub_structured_path, read_loghub_structured, LOGHUB_SYSTEMS};
use logcanary_detector::masking::mask;
use logcanary_detector::scorer::{LogLine, Scorer, ScorerConfig, Severity};

const BATCH: usize = 32;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/loghub");
    let mut target_lines = 130_000usize;
    let mut embed_texts = 512usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--lines" => target_lines = args.next().and_then(|v| v.parse().ok()).unwrap_or(130_000),
            "--embed" => embed_texts = args.next().and_then(|v| v.parse().ok()).unwrap_or(512),
            other => dir = PathBuf::from(other),
        }
    }

    // The 13 samples interleaved round-robin, repeated to the target length.
    let samples: Vec<Vec<String>> = LOGHUB_SYSTEMS
        .iter()
        .map(|s| {
            read_loghub_structured(&loghub_structured_path(&dir, s))
                .map(|lines| lines.into_iter().map(|l| l.content).collect())
        })
        .collect::<Result<_, _>>()?;
    let longest = samples.iter().map(Vec::len).max().unwrap_or(0);
    let mut one_pass = Vec::new();
    for i in 0..longest {
        for sample in &samples {
            if let Some(line) = sample.get(i) {
                one_pass.push(line.clone());
            }
        }
    }
    let rss_before_model = vm_rss_kib();
    let config = EmbedderConfig::from_env();
    let load_started = Instant::now();
    let embedder = Embedder::start(config.clone())?;
    let load_s = load_started.elapsed().as_secs_f64();
    let rss_model = vm_rss_kib();
    println!(
        "model load: {load_s:.2} s; VmRSS before model {} MiB, with model {} MiB",
        rss_before_model / 1024,
        rss_model / 1024
    );

    // (b) Whole detector: masking + mining + cached scoring, one scoring thread.
    let mut scorer = Scorer::new(ScorerConfig::default(), embedder);
    let embed_texts_wanted = embed_texts;
    let mut t = 1_700_000_000_000i64;
    let mut to_lines = |msgs: &[String]| -> Vec<LogLine> {
        msgs.iter()
            .map(|m| {
                t += 10;
                LogLine {
                    timestamp_ms: t,
                    severity: Severity::Info,
                    message: m.clone(),
                    source: None,
                }
            })
            .collect()
    };
    let mut stream = Vec::with_capacity(target_lines + one_pass.len());
    while stream.len() < target_lines {
        stream.extend(to_lines(&one_pass));
    }
    // Cold pass over the whole stream (the model runs on each new template).
    let cold_started = Instant::now();
    for chunk in stream.chunks(256) {
        scorer.score_batch(chunk)?;
    }
    let cold_s = cold_started.elapsed().as_secs_f64();
    let needed = scorer.lines_needing_model();
    println!("VmRSS after the cold pass: {} MiB", vm_rss_kib() / 1024);
    let embedded = scorer.texts_embedded();
    // Warm pass: the same stream again, every template cached.
    let warm_stream = to_lines(&stream.iter().map(|l| l.message.clone()).collect::<Vec<_>>());
    let before = scorer.lines_needing_model();
    let warm_started = Instant::now();
    let mut flagged = 0usize;
    for chunk in warm_stream.chunks(256) {
        flagged += scorer
            .score_batch(chunk)?
            .iter()
            .filter(|s| s.is_anomaly)
            .count();
    }
    let warm_s = warm_started.elapsed().as_secs_f64();
    let warm_needed = scorer.lines_needing_model() - before;
    let lines = stream.len();
    println!(
        "detector: {lines} lines ({} templates); cold {:.0} lines/s ({} lines needed the model = {:.3}%, {} texts embedded); \
         warm {:.0} lines/s ({} needed the model, {} flagged)",
        scorer.templates(),
        lines as f64 / cold_s,
        needed,
        100.0 * needed as f64 / lines as f64,
        embedded,
        lines as f64 / warm_s,
        warm_needed,
        flagged,
    );
    let rss_worker = vm_rss_kib();
    println!(
        "VmRSS of the detector after the run (model, templates, caches): {} MiB",
        rss_worker / 1024
    );
    let templates = scorer.templates();
    let embedder = scorer.into_embedder();
    // (a) Embedding throughput on distinct, uncached template texts.
    let mut distinct: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for line in &one_pass {
        let m = mask(line);
        if seen.insert(m.clone()) {
            distinct.push(m);
        }
        if distinct.len() >= embed_texts_wanted {
            break;
        }
    }
    let n_texts = distinct.len();
    let (plain_lps, embedder_lps) = embedding_throughput(&config, &embedder, &distinct)?;
    println!(
        "embedding: {n_texts} distinct texts, batches of {BATCH}; embedder {embedder_lps:.0} texts/s, \
         plain session.run loop {plain_lps:.0} texts/s, ratio {:.3}",
        embedder_lps / plain_lps
    );

    let rss_after_embed = vm_rss_kib();
    println!(
        "VmRSS after the embedding benchmark: {} MiB",
        rss_after_embed / 1024
    );

    // Parts, for finding the bottleneck.
    let mask_started = Instant::now();
    let mut bytes = 0usize;
    for l in &stream {
        bytes += mask(&l.message).len();
    }
    let mask_lps = lines as f64 / mask_started.elapsed().as_secs_f64();
    println!("masking alone: {mask_lps:.0} lines/s ({bytes} bytes out)");
    let rss_end = vm_rss_kib();
    println!(
        "VmRSS at the end (with the benchmark's second session): {} MiB",
        rss_end / 1024
    );
    println!(
        "{}",
        serde_json::json!({
            "embed_texts": n_texts,
            "embedder_texts_per_s": embedder_lps.round(),
            "plain_session_run_texts_per_s": plain_lps.round(),
            "embed_ratio": (embedder_lps / plain_lps * 1000.0).round() / 1000.0,
            "detector_lines": lines,
            "templates": templates,
            "cold_lines_per_s": (lines as f64 / cold_s).round(),
            "warm_lines_per_s": (lines as f64 / warm_s).round(),
            "share_needing_model": needed as f64 / lines as f64,
            "masking_lines_per_s": mask_lps.round(),
            "vm_rss_mib_model_loaded": rss_model / 1024,
            "vm_rss_mib_detector_after_run": rss_worker / 1024,
            "vm_rss_mib_after_embedding_bench": rss_after_embed / 1024,
            "vm_rss_mib_end": rss_end / 1024,
        })
    );
    Ok(())
}

/// (plain loop texts/s, embedder texts/s), best of three alternating rounds each.
fn embedding_throughput(
    config: &EmbedderConfig,
    embedder: &Embedder,
    texts: &[String],
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    // The same batches the embedder forms: tokenized, sorted by length, 32 per run.
    let mut tokenizer =
        tokenizers::Tokenizer::from_file(config.tokenizer_path()).map_err(|e| e.to_string())?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: 256,
            ..Default::default()
        }))
        .map_err(|e| e.to_string())?;
    let mut encodings: Vec<tokenizers::Encoding> = texts
        .iter()
        .map(|t| {
            tokenizer
                .encode(t.as_str(), true)
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    encodings.sort_by_key(|e| e.get_ids().len());
    let batches: Vec<[Vec<i64>; 3]> = encodings
        .chunks(BATCH)
        .map(|chunk| {
            let seq = chunk.iter().map(|e| e.get_ids().len()).max().unwrap_or(1);
            let mut ids = vec![0i64; chunk.len() * seq];
            let mut mask = vec![0i64; chunk.len() * seq];
            let types = vec![0i64; chunk.len() * seq];
            for (r, e) in chunk.iter().enumerate() {
                for (c, (&id, &m)) in e.get_ids().iter().zip(e.get_attention_mask()).enumerate() {
                    ids[r * seq + c] = i64::from(id);
                    mask[r * seq + c] = i64::from(m);
                }
            }
            [ids, mask, types]
        })
        .collect();
    let shapes: Vec<Vec<i64>> = encodings
        .chunks(BATCH)
        .map(|chunk| {
            let seq = chunk.iter().map(|e| e.get_ids().len()).max().unwrap_or(1);
            vec![chunk.len() as i64, seq as i64]
        })
        .collect();
    let environment = shared_environment(&config.ort_dylib)?;
    // Same session options as the embedder's (threads, arena), so the ratio measures the
    // embedder's own overhead: tokenizing, channel, padding, pooling.
    let mut session = ort::session::Session::builder(&environment)
        .map_err(|e| e.to_string())?
        .with_intra_threads(config.intra_threads.max(1))
        .map_err(|e| e.to_string())?
        .with_memory_pattern(config.memory_arena)
        .map_err(|e| e.to_string())?
        .with_execution_providers([ort::ep::CPU::default()
            .with_arena_allocator(config.memory_arena)
            .build()])
        .map_err(|e| e.to_string())?
        .commit_from_file(config.model_path())
        .map_err(|e| e.to_string())?;

    let mut best_plain = 0f64;
    let mut best_embedder = 0f64;
    for _ in 0..3 {
        let started = Instant::now();
        for (batch, shape) in batches.iter().zip(&shapes) {
            let tensor = |data: &Vec<i64>| {
                ort::value::Tensor::from_array((shape.clone(), data.clone())).map(|t| t.into_dyn())
            };
            let inputs = vec![
                ("input_ids", tensor(&batch[0])?),
                ("attention_mask", tensor(&batch[1])?),
                ("token_type_ids", tensor(&batch[2])?),
            ];
            let outputs = session.run(inputs)?;
            std::hint::black_box(outputs.len());
        }
        best_plain = best_plain.max(texts.len() as f64 / started.elapsed().as_secs_f64());

        // The embedder gets all texts in one request, so it forms the same batches (it
        // tokenizes, sorts by length, pads per batch, pools and normalises itself).
        let started = Instant::now();
        std::hint::black_box(embedder.embed_blocking(texts.to_vec())?);
        best_embedder = best_embedder.max(texts.len() as f64 / started.elapsed().as_secs_f64());
    }
    Ok((best_plain, best_embedder))
}

/// VmRSS of this process in KiB (0 where /proc is unavailable).
fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
