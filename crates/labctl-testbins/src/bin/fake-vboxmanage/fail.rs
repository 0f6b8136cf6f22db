//! Failed calls: `VBoxManage: error:` messages and exit codes.

/// A failed call: stderr text and exit code.
pub(crate) struct Fail {
    pub(crate) stderr: String,
    pub(crate) code: u8,
}

pub(crate) type Res = Result<(), Fail>;

pub(crate) fn fail(lines: &[&str]) -> Fail {
    Fail {
        stderr: lines
            .iter()
            .map(|l| format!("VBoxManage: error: {l}\n"))
            .collect(),
        code: 1,
    }
}

pub(crate) fn syntax(msg: &str) -> Fail {
    Fail {
        stderr: format!("VBoxManage: error: {msg}\n"),
        code: 2,
    }
}

pub(crate) fn not_found(name: &str) -> Fail {
    fail(&[
        &format!("Could not find a registered machine named '{name}'"),
        "Details: code VBOX_E_OBJECT_NOT_FOUND (0x80bb0001), component VirtualBoxWrap, interface IVirtualBox, callee nsISupports",
        "Context: \"FindMachine(Bstr(a->argv[0]).raw(), machine.asOutParam())\" at line 2791 of file VBoxManageInfo.cpp",
    ])
}

pub(crate) fn locked(name: &str) -> Fail {
    fail(&[
        &format!("The machine '{name}' is already locked for a session (or being unlocked)"),
        "Details: code VBOX_E_INVALID_OBJECT_STATE (0x80bb0007), component MachineWrap, interface IMachine, callee nsISupports",
        "Context: \"LockMachine(a->session, LockType_Write)\" at line 640 of file VBoxManageModifyVM.cpp",
    ])
}

pub(crate) fn not_running(name: &str) -> Fail {
    fail(&[&format!("Machine '{name}' is not currently running")])
}
