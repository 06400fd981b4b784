//! Integration tests of the scoring library, in one test binary (one link instead of one
//! per file): the handler on the real model (`make setup`) against the real Postgres
//! (`TEST_DATABASE_SERVER`), each test with a database of its own.

mod bounded_templates;
mod labels;
mod parity;
mod relearn;
mod replicas;
mod support;
