//! Sentinel: predicts which process will exhaust memory and stops it first.
//!
//! `model` and `policy` are pure; `probes`, `collector` and `actuator` touch
//! the system; `agent` wires them; `api` serves them; `cli` is the command
//! line (the agent's `run` and the clients of its API).

pub mod actuator;
pub mod agent;
pub mod alert;
pub mod api;
pub mod cli;
pub mod collector;
pub mod config;
pub mod journal;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod probes;
pub mod sim;
pub mod units;
