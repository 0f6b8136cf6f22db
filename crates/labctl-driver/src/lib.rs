//! VM drivers behind the [`Driver`] trait, the box store, and [`exec`], the one module that
//! runs external programs.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod boxes;
mod driver;
pub mod exec;
pub mod files;
pub mod libvirt;
mod open;
pub mod proc;
pub mod qemu;
pub mod route;
pub mod vbox;

pub use driver::*;
pub use open::{HostEnv, PROVIDERS, forget_box, libvirt_host_memory_mb, open};
