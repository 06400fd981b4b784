//! Integration tests of the notifier against the real Postgres and RabbitMQ, in one test
//! binary: claiming alerts (`claim`), delivering them to real receivers (`delivery`),
//! incidents under replicas and races (`incidents`), a real Prometheus Alertmanager
//! (`alertmanager`) and a PagerDuty Events API v2 receiver that checks the documented
//! schema (`pagerduty`).

mod alertmanager;
mod claim;
mod delivery;
mod incidents;
mod pagerduty;
