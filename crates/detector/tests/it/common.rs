//! Shared by the integration tests that replay traffic through the real model.

/// A healthy host's everyday lines; `10.0.0.` is rewritten per round so addresses vary.
pub const ROUTINE: [&str; 6] = [
    "Accepted publickey for deploy from 10.0.0.5 port 51234 ssh2",
    "session opened for user deploy by (uid=0)",
    "session closed for user deploy",
    "GET /api/health 200 3ms",
    "Connection to 10.0.0.7 closed",
    "cache refresh finished in 120 ms",
];
