//! Integration tests of the scheduler against the real Postgres and RabbitMQ, in one test
//! binary: retention (`retention`) and firing, leadership and the relay (`scheduler`).

mod retention;
mod scheduler;
