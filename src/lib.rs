//! ecs-hostnet: prepares a Linux host's network for Amazon ECS tasks with IAM roles.
//!
//! The pipeline, one layer per folder (docs/architecture.md):
//!
//! ```text
//! config  -> desired -> plan -> render        the pure core: no I/O, tested without root
//!    \__________\_________\______\___ model   the shared vocabulary (a leaf)
//! engine: read (host) -> plan -> carry out (host) -> read back
//! host:   nf_tables netlink (the only FFI), rtnetlink, sysctl, netns, files
//! cli:    flags in, a call into the engine, output out (src/cli/, a module of the binary)
//! ```

#![warn(missing_docs)]
// Unsafe code lives in one module, host::nft::ffi, which allows it.
#![deny(unsafe_code)]

pub mod config;
pub mod desired;
pub mod engine;
pub mod host;
pub mod model;
pub mod plan;
pub mod render;
