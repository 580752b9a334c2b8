//! greeting-service: `POST /greet {"name":"John"}` → `{"message":"Hello, John!"}`,
//! on hyper 1.x, as fast and as safely as the hardware allows.
//!
//! The request path, top to bottom: [`server`] accepts → [`connection`] serves HTTP/1
//! or h2c with deadlines → [`service`] adds request id, headers and panic recovery →
//! [`routes`] dispatches ([`metrics`] and [`trace`] observe) → [`greet`] parses ([`json`]), validates and renders, or
//! [`problem`] answers with RFC 9457 problem details.
#![forbid(unsafe_code)]

pub mod arena;
pub mod config;
pub mod connection;
pub mod greet;
pub mod healthcheck;
pub mod json;
pub mod metrics;
pub mod problem;
pub mod routes;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod trace;
