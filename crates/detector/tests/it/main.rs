//! Integration tests of the detector, in one test binary (one link instead of one per
//! file). The ones that run the real model need `make setup` /
//! scripts/fetch-ml-assets.sh to have run.

mod common;
mod embedder_fixture;
mod eval_replay;
mod grouping_accuracy;
mod meaning;
mod patterns;
