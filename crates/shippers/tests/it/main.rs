//! The shippers' bodies as the clients send them, decoded end to end through the public
//! API: one module per protocol, plus compression and the never-panics properties.

mod compression;
mod elastic;
mod loki;
mod otlp;
mod props;
