//! What the administrator configures around the write path: backup runs and
//! their hooks ([`backup`]), throttling ([`throttle`]), alerts ([`alert`]),
//! retention ([`retention`]), restore drills ([`drill`]), replicas
//! ([`replica`]), classification into tiers ([`classify`]), and the host
//! configuration that holds them all ([`hostconfig`]).
//!
//! Uses the trees and the store through their APIs; imports nothing from ops
//! or the daemon.

pub mod alert;
pub mod backup;
pub mod classify;
pub mod drill;
pub mod hostconfig;
pub mod replica;
pub mod retention;
pub mod throttle;
