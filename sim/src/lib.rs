//! # ferry-sim
//!
//! A seeded discrete-event simulator that runs Ferry's real routing engine
//! ([`ferry_router::engine::Engine`]) on many nodes at once, with in-memory custody
//! stores, modelled links and virtual time. No async runtime, no clock reads, no
//! threads: the same scenario and seed give a byte-identical report.
//!
//! Inputs are contact traces and message workloads in The ONE simulator's external
//! events format ([`trace`]), or synthetic mobility ([`mobility`]), described by a
//! scenario file ([`scenario`]). [`run`] drives the engines; [`report`] holds what a
//! run measured.
#![forbid(unsafe_code)]

pub mod mobility;
pub mod model;
pub mod plot;
pub mod report;
pub mod run;
pub mod scenario;
pub mod store;
pub mod trace;
