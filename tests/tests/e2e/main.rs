//! End-to-end tests across the real binaries (spawned as child processes, see
//! `logcanary_e2e::Stack`), in one test binary: build the binaries first
//! (`cargo build --workspace --bins`, which `make test` does).

mod cli;
mod deploy;
mod feedback;
mod flow;
mod metrics;
mod notifier;
mod patterns;
mod probe;
mod realtime;
mod scheduler;
mod schemathesis;
mod shippers;
