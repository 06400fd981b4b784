//! End-to-end tests across the real binaries live in tests/*.rs.
