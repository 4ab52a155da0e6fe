//! # ferry-router
//!
//! The node side of Ferry: the node's home directory (identity, realm secrets,
//! configuration, custody store) and the `ferry` command built on it.
//!
//! ```no_run
//! use ferry_router::home::{Home, InitOptions};
//! let dir = std::path::Path::new("/var/lib/ferry");
//! let (node_id, _realms) = Home::init(dir, InitOptions::default())?;
//! let home = Home::open(dir)?;
//! assert_eq!(home.keyring().node_id(), node_id);
//! # Ok::<(), ferry_router::home::HomeError>(())
//! ```
#![forbid(unsafe_code)]

pub mod app_api;
pub mod config;
pub mod engine;
pub mod home;
pub mod inspect;
