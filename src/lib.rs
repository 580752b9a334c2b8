//! greeting-service: `POST /greet {"name":"John"}` → `{"message":"Hello, John!"}`,
//! on hyper 1.x, as fast and as safely as the hardware allows.
//!
//! # Layout
//!
//! The request path, top to bottom: [`server`] accepts and drives each connection
//! (HTTP/1 or h2c, deadlines, drain) → [`endpoint`] wraps every request (request id,
//! common headers, panic recovery, metrics, access log) → [`routes`] dispatches on
//! method and path and reads the body → [`domain`] parses, validates and renders the
//! greeting or the RFC 9457 problem → [`base`] holds the leaves all of them share
//! (HTTP types, the route label set, JSON in and out, the output arena, trace context,
//! metrics, the drain signal and readiness).
//!
//! # Layers
//!
//! Imports run one way, from the top down. A module may use modules of its own layer
//! and of the layers below it, never one above; within a layer no two modules use each
//! other in a loop. `tests/layers.rs` reads the list below and fails on an arrow back
//! up or a cycle, so the rule cannot drift from this text.
//!
//! 0. `config`, `base`: configuration and the leaves.
//! 1. `domain`: the greeting and problem details.
//! 2. `routes`: routing, probes, body collection with limits.
//! 3. `endpoint`: what happens around every request, whatever the handler.
//! 4. `server`: listeners, connections, protocols, TLS, drain.
//! 5. `telemetry`, `healthcheck`: process-level concerns of the binary.
#![forbid(unsafe_code)]

pub mod base;
pub mod config;
pub mod domain;
pub mod endpoint;
pub mod healthcheck;
pub mod routes;
pub mod server;
pub mod telemetry;
