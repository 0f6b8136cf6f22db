use crate::Result;
use crate::cli::RelayArgs;
use crate::errors::code;

/// `__relay PORT`: started by QEMU for each guest connection to a host service, with the
/// connection on stdin, stdout AND stderr (slirp's `guestfwd=…-cmd:`), so nothing may be
/// logged or printed here. A failure only closes that connection, which the guest sees.
pub(crate) fn run(args: &RelayArgs) -> Result<u8> {
    Ok(match labctl_driver::qemu::relay::run(args.port) {
        Ok(()) => code::OK,
        Err(_) => code::OTHER,
    })
}
