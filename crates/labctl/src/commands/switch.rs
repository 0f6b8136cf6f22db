use crate::Result;
use crate::cli::SwitchArgs;
use crate::errors::{ExpectedError, code};

pub(crate) fn run(args: &SwitchArgs) -> Result<u8> {
    labctl_driver::qemu::switch::run(&args.run_dir, &args.networks).map_err(|source| {
        ExpectedError::Write {
            path: args.run_dir.clone(),
            source,
        }
    })?;
    Ok(code::OK)
}
