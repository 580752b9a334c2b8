//! Black-box tests: the real binary on a loopback port, real HTTP clients.
//! One test binary with modules, to keep link times down.

mod api;
mod budget;
#[path = "../common/mod.rs"]
mod common;
mod config;
mod helpers;
mod lifecycle;
mod modes;
mod ops;
mod parking;
mod protocol;
