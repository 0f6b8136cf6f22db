//! The SSH provisioner: wait for a guest's sshd, run commands with live merged output and an
//! exit status, upload files, configure guests, and make lab keys.
//!
//! ssh2 is blocking: callers run one session per node on its own thread. Every blocking call
//! is bounded (session timeout, or non-blocking reads with a deadline), and stderr is merged
//! into stdout so that a chatty command cannot stall the channel.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod guest;
pub mod hostkeys;
pub mod keys;
mod session;

pub use session::*;
