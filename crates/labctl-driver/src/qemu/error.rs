//! QEMU driver errors that only the QEMU driver has (the shared ones are in `DriverError`).

use std::path::PathBuf;

/// What went wrong inside the QEMU driver.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// The QEMU machine protocol socket did not answer as expected.
    #[error("QMP on {}: {message}", socket.display())]
    Qmp { socket: PathBuf, message: String },
}
