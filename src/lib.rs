//! greeting-service: `POST /greet {"name":"John"}` → `{"message":"Hello, John!"}`,
//! on hyper 1.x, as fast and as safely as the hardware allows.
//!
//! # Layout
//!
//! The request path, top to bottom: [`server`] accepts and drives each connection
//! (HTTP/1 or h2c, deadlines, drain) → [`middleware`] wraps every request (route,
//! request id, trace context, the headers every response carries, panic recovery,
//! metrics, access log) → [`routes`] answers the matched route and reads the body →
//! [`domain`] parses, validates and renders the greeting or the RFC 9457 problem.
//! [`app`] wires them together from a [`config::Config`]; the binary, the integration
//! tests and the benches start the service through it (the fuzz target drives one
//! connection and builds its routes and middleware by hand).
//!
//! # Layers
//!
//! Imports run one way, from the top down. A module may use modules of its own layer
//! and of the layers below it, never one above; within a layer no two modules use each
//! other in a loop. `tests/layers.rs` reads the list below and fails on an arrow back
//! up or a cycle, so the rule cannot drift from this text.
//!
//! 0. `config`: settings from flags and environment.
//! 1. `handler`, `ids`, `arena`, `json`, `budget`, `telemetry`, `server::drain`: the leaves (the handler contract and the route label set, request ids, output buffers, JSON in and out, the body memory budget, metrics, spans and logs, readiness and the drain signal).
//! 2. `domain`: the greeting and problem details.
//! 3. `routes`: the answer for each route, body collection with limits.
//! 4. `middleware`: what happens around every request, whatever the handler.
//! 5. `server`: listeners, connections, protocols, TLS, drain.
//! 6. `app`, `healthcheck`: the composition root, and the binary's health probe.
#![forbid(unsafe_code)]

pub mod app;
pub mod arena;
pub mod budget;
pub mod config;
pub mod domain;
pub mod handler;
pub mod healthcheck;
pub mod ids;
pub mod json;
pub mod middleware;
pub mod routes;
pub mod server;
pub mod telemetry;
