//! The stand-in's typed state: what VirtualBox keeps about VMs, NICs, snapshots and host-only
//! interfaces and networks, as stored in the state directory (one JSON file each).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A VM's state, as `showvminfo --machinereadable` prints it (`VMState=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum VmState {
    Poweroff,
    Running,
    Paused,
    Saved,
    Aborted,
    Gurumeditation,
}

impl VmState {
    /// Running or paused: the VM has a session (a process), its settings are locked.
    pub(crate) fn in_session(self) -> bool {
        matches!(self, VmState::Running | VmState::Paused)
    }
}

impl fmt::Display for VmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VmState::Poweroff => "poweroff",
            VmState::Running => "running",
            VmState::Paused => "paused",
            VmState::Saved => "saved",
            VmState::Aborted => "aborted",
            VmState::Gurumeditation => "gurumeditation",
        })
    }
}

/// A registered VM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Vm {
    /// Registration order (`list vms` prints in it).
    pub(crate) order: u64,
    pub(crate) name: String,
    pub(crate) uuid: String,
    /// The machine folder.
    pub(crate) dir: PathBuf,
    /// The settings file (`<dir>/<name>.vbox`).
    pub(crate) cfgfile: PathBuf,
    pub(crate) ostype: String,
    pub(crate) state: VmState,
    pub(crate) config: Config,
    pub(crate) extradata: BTreeMap<String, String>,
    pub(crate) snapshots: Vec<Snapshot>,
    /// The current snapshot's UUID.
    pub(crate) current: Option<String>,
    /// When a pending ACPI shutdown powers the VM off (ms since the epoch).
    pub(crate) acpi_off_at: Option<u64>,
    /// The master's UUID, for a linked clone.
    pub(crate) linked_to: Option<String>,
    /// The disk on `SATA Controller` port 0.
    pub(crate) disk: Option<PathBuf>,
}

/// The settings a snapshot keeps and `restore` puts back (and `clonevm` copies, with `ostype`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Config {
    pub(crate) cpus: u64,
    pub(crate) memory: u64,
    pub(crate) groups: String,
    /// `--nested-hw-virt`: `on` or `off`.
    pub(crate) nested: String,
    /// NICs by number (1–8).
    pub(crate) nics: BTreeMap<u8, Nic>,
    /// `off`, or `0x3f8,4`.
    pub(crate) uart1: String,
    /// `--uartmode1`: `disconnected`, `file,PATH`, …
    pub(crate) uartmode1: Option<String>,
}

/// A network adapter.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Nic {
    /// The attachment: `none`, `nat`, `hostonly`, `hostonlynet`, `intnet`, …
    #[serde(rename = "type")]
    pub(crate) kind: String,
    /// 12 hex digits, no colons.
    pub(crate) mac: String,
    /// `on` or `off`.
    pub(crate) cable: String,
    /// NAT port forwards, `name,tcp,hostip,hostport,guestip,guestport`.
    pub(crate) rules: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) hostonly: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) hostonlynet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) intnet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) localhostreachable: Option<String>,
}

impl Nic {
    /// A new NIC of `kind` with a MAC.
    pub(crate) fn new(kind: &str, mac: String) -> Nic {
        Nic {
            kind: kind.into(),
            mac,
            cable: "on".into(),
            ..Nic::default()
        }
    }
}

/// A snapshot in a VM's tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub(crate) name: String,
    pub(crate) uuid: String,
    /// The parent snapshot's UUID; `None` for the root.
    pub(crate) parent: Option<String>,
    /// Taken while the VM ran: restoring it leaves the VM `saved`.
    pub(crate) online: bool,
    pub(crate) config: Config,
}

/// A host-only interface (`vboxnetN`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HostOnlyIf {
    pub(crate) name: String,
    pub(crate) index: u64,
    pub(crate) guid: String,
    pub(crate) ip: String,
    pub(crate) netmask: String,
}

/// A host-only network (VirtualBox 7).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HostOnlyNet {
    pub(crate) name: String,
    pub(crate) guid: String,
    pub(crate) netmask: String,
    pub(crate) lower: String,
    pub(crate) upper: String,
}
