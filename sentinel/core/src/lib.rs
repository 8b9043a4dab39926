//! Sentinel's decision engine and everything it decides with, without
//! I/O crates:
//! `model` (series, slopes, what the host reports), `policy` (rules,
//! levels, victim choice, admission), `config` (the policy file), the
//! `engine` behind its host port, `fake` (a host whose processes grow by
//! script), and `sim` (replay, which runs the engine on the fake host).
//!
//! The agent implements the engine's [`engine::Host`] for real; nothing
//! here reads /proc, signals a process or knows about gRPC. The one file
//! read here is the config the caller names (`Config::load`).

pub mod config;
pub mod decision;
pub mod engine;
pub mod fake;
pub mod model;
pub mod policy;
pub mod sim;
pub mod units;
