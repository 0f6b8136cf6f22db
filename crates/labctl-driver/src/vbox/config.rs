//! Where VBoxManage is, which locale it runs in, which versions and host CPUs labctl accepts.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{HostOs, NOT_INSTALLED_HINT, VBoxVersion, preflight};
use crate::DriverError;
use crate::exec::{Cmd, ToolError, find_program, is_executable};

/// Where VBoxManage is and how patient to be.
#[derive(Debug, Clone)]
pub struct VBoxConfig {
    pub vboxmanage: PathBuf,
    /// `/etc/vbox/networks.conf` (host-only ranges).
    pub networks_conf: PathBuf,
    pub host_os: HostOs,
    /// The host CPU architecture (`x86_64`, `aarch64`), as `std::env::consts::ARCH` says.
    pub host_arch: String,
    /// Pause before the first retry of a transient error; doubles after.
    pub retry_backoff: Duration,
    /// How often `stop` looks whether the guest has powered off.
    pub poll_interval: Duration,
    /// `LC_ALL` and `LANG` for VBoxManage ([`child_locale`]).
    pub locale: String,
    /// labctl's data directory: the host-wide host-only network lock lives there.
    pub data_dir: Option<PathBuf>,
    /// Append every call to this file as JSON lines (`LABCTL_VBOX_RECORD`).
    pub record: Option<PathBuf>,
}

/// The locale VBoxManage runs in: English, UTF-8. Plain `C` gave empty output on some hosts
/// (vagrant#13145), so a UTF-8 locale: `C.UTF-8` on Linux when it is installed, else
/// `en_US.UTF-8` (macOS has no `C.UTF-8`). Windows ignores both variables (VirtualBox follows
/// the system language there), which is why only machine-readable output is parsed.
pub fn child_locale(host_os: HostOs, c_utf8_installed: bool) -> &'static str {
    match host_os {
        HostOs::Linux | HostOs::Other if c_utf8_installed => "C.UTF-8",
        _ => "en_US.UTF-8",
    }
}

pub(super) fn c_utf8_installed() -> bool {
    ["/usr/lib/locale/C.utf8", "/usr/lib/locale/C.UTF-8"]
        .iter()
        .any(|p| Path::new(p).exists())
}

/// Where VBoxManage may be installed, in the order to try, for a host OS. `env` reads an
/// environment variable. Windows: `%VBOX_MSI_INSTALL_PATH%` (set by the MSI installer),
/// `%VBOX_INSTALL_PATH%` (older installers; may hold several `;`-separated folders), then
/// `%ProgramFiles%\Oracle\VirtualBox` and `C:\Program Files\Oracle\VirtualBox`. Windows
/// paths are built as text so that this is testable on any host.
pub fn vboxmanage_candidates(
    host_os: HostOs,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Vec<PathBuf> {
    match host_os {
        HostOs::Windows => {
            let mut dirs: Vec<String> = Vec::new();
            for var in ["VBOX_MSI_INSTALL_PATH", "VBOX_INSTALL_PATH"] {
                if let Some(v) = env(var) {
                    dirs.extend(
                        v.to_string_lossy()
                            .split(';')
                            .map(str::trim)
                            .filter(|d| !d.is_empty())
                            .map(String::from),
                    );
                }
            }
            if let Some(pf) = env("ProgramFiles") {
                dirs.push(format!("{}\\Oracle\\VirtualBox", pf.to_string_lossy()));
            }
            dirs.push("C:\\Program Files\\Oracle\\VirtualBox".into());
            let mut out: Vec<PathBuf> = Vec::new();
            for d in dirs {
                let p = PathBuf::from(format!(
                    "{}\\VBoxManage.exe",
                    d.trim_end_matches(['\\', '/'])
                ));
                if !out.contains(&p) {
                    out.push(p);
                }
            }
            out
        }
        HostOs::MacOs => vec![
            PathBuf::from("/Applications/VirtualBox.app/Contents/MacOS/VBoxManage"),
            PathBuf::from("/usr/local/bin/VBoxManage"),
        ],
        _ => vec![
            PathBuf::from("/usr/bin/VBoxManage"),
            PathBuf::from("/usr/local/bin/VBoxManage"),
            PathBuf::from("/usr/lib/virtualbox/VBoxManage"),
        ],
    }
}

/// VBoxManage's file name on a host OS.
pub fn vboxmanage_name(host_os: HostOs) -> &'static str {
    if host_os == HostOs::Windows {
        "VBoxManage.exe"
    } else {
        "VBoxManage"
    }
}

/// Where VBoxManage is when `LABCTL_VBOXMANAGE` is not set: the first path `exists` accepts of
/// [`vboxmanage_name`] in each `PATH` folder, then [`vboxmanage_candidates`] (on Windows
/// `%VBOX_MSI_INSTALL_PATH%`, `%VBOX_INSTALL_PATH%`, then the default install folder). `env`
/// reads the environment and `exists` the file system; `PATH` is split by the host OS's rule
/// (`;` and quoted folders on Windows, `:` elsewhere), so that every host OS is tested on any
/// host.
pub fn locate_vboxmanage(
    host_os: HostOs,
    env: &dyn Fn(&str) -> Option<OsString>,
    exists: &dyn Fn(&Path) -> bool,
) -> Option<PathBuf> {
    let path = env("PATH").map(|p| p.to_string_lossy().into_owned());
    let name = vboxmanage_name(host_os);
    let on_path: Vec<PathBuf> = match (host_os, path) {
        (_, None) => Vec::new(),
        (HostOs::Windows, Some(path)) => path
            .split(';')
            .map(|d| d.trim().trim_matches('"'))
            .filter(|d| !d.is_empty())
            .map(|d| PathBuf::from(format!("{}\\{name}", d.trim_end_matches(['\\', '/']))))
            .collect(),
        (_, Some(path)) => path.split(':').map(|d| Path::new(d).join(name)).collect(),
    };
    on_path
        .into_iter()
        .chain(vboxmanage_candidates(host_os, env))
        .find(|p| exists(p))
}

impl VBoxConfig {
    /// VBoxManage from `LABCTL_VBOXMANAGE` (refused when it names no executable), else
    /// [`locate_vboxmanage`]: PATH, then where the installers put it.
    pub fn discover() -> Result<VBoxConfig, DriverError> {
        let host_os = HostOs::current();
        let name = vboxmanage_name(host_os);
        let program = if std::env::var_os("LABCTL_VBOXMANAGE").is_some_and(|v| !v.is_empty()) {
            find_program(name, "LABCTL_VBOXMANAGE", NOT_INSTALLED_HINT)?
        } else {
            locate_vboxmanage(host_os, &|k| std::env::var_os(k), &is_executable).ok_or_else(
                || ToolError::NotFound {
                    program: name.to_string(),
                    hint: Some(NOT_INSTALLED_HINT.to_string()),
                },
            )?
        };
        let mut cfg = VBoxConfig::with_program(program);
        if host_os == HostOs::MacOs && cfg.host_arch == "x86_64" {
            // An x86_64 labctl under Rosetta on Apple silicon: the CPU is still arm64.
            let arm = Cmd::new("/usr/sbin/sysctl")
                .args(["-in", "hw.optional.arm64"])
                .timeout(Duration::from_secs(5))
                .run()
                .ok();
            cfg.host_arch = effective_arch(&cfg.host_arch, arm.as_ref().map(|o| o.stdout.as_str()));
        }
        Ok(cfg)
    }

    /// Defaults for a given VBoxManage; `LABCTL_VBOX_RECORD` names the transcript file.
    pub fn with_program(vboxmanage: PathBuf) -> VBoxConfig {
        let host_os = HostOs::current();
        VBoxConfig {
            vboxmanage,
            networks_conf: PathBuf::from(preflight::NETWORKS_CONF),
            host_os,
            host_arch: std::env::consts::ARCH.to_string(),
            retry_backoff: Duration::from_millis(500),
            poll_interval: Duration::from_millis(500),
            locale: child_locale(host_os, c_utf8_installed()).to_string(),
            data_dir: None,
            record: std::env::var_os("LABCTL_VBOX_RECORD")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }

    /// labctl's data directory (for the host-only network lock).
    #[must_use]
    pub fn with_data_dir(mut self, dir: PathBuf) -> VBoxConfig {
        self.data_dir = Some(dir);
        self
    }
}

/// The oldest VirtualBox labctl drives: 6.0 placed imported disks differently
/// (ApplianceImplImport.cpp), and 6.1 is the oldest release still seen in classrooms.
pub const MIN_VERSION: VBoxVersion = VBoxVersion::new(6, 1, 0);

/// Why a VirtualBox version is refused, if it is.
pub fn version_problem(v: VBoxVersion) -> Option<&'static str> {
    if v < MIN_VERSION {
        Some("labctl needs VirtualBox 6.1 or later")
    } else if v == VBoxVersion::new(7, 0, 0) {
        Some(
            "VirtualBox 7.0.0 leaves NAT port-forwarding rules out of `showvminfo --machinereadable` when an adapter has several, so labctl cannot manage them",
        )
    } else {
        None
    }
}

/// The host CPU: `arch` as compiled, unless macOS's `sysctl -in hw.optional.arm64` says `1`
/// (an x86_64 binary under Rosetta on Apple silicon).
pub fn effective_arch(arch: &str, sysctl_arm64: Option<&str>) -> String {
    if sysctl_arm64.is_some_and(|o| o.trim() == "1") {
        "aarch64".into()
    } else {
        arch.into()
    }
}

/// Whether an OVF describes a 64-bit ARM guest (VirtualBox OS type `*_arm64`).
pub fn ovf_is_arm(ovf_text: &str) -> bool {
    let t = ovf_text.to_ascii_lowercase();
    t.contains("_arm64") || t.contains("aarch64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vboxmanage_on_windows_from_the_installer_variables_then_the_default_folder() {
        let env = |k: &str| -> Option<OsString> {
            match k {
                "VBOX_MSI_INSTALL_PATH" => Some("D:\\Apps\\VirtualBox\\".into()),
                "VBOX_INSTALL_PATH" => Some("E:\\Old VB;D:\\Apps\\VirtualBox".into()),
                "ProgramFiles" => Some("C:\\Program Files".into()),
                _ => None,
            }
        };
        let got: Vec<String> = vboxmanage_candidates(HostOs::Windows, &env)
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            got,
            [
                "D:\\Apps\\VirtualBox\\VBoxManage.exe",
                "E:\\Old VB\\VBoxManage.exe",
                "C:\\Program Files\\Oracle\\VirtualBox\\VBoxManage.exe",
            ]
        );
        let none = |_: &str| -> Option<OsString> { None };
        assert_eq!(
            vboxmanage_candidates(HostOs::Windows, &none),
            [PathBuf::from(
                "C:\\Program Files\\Oracle\\VirtualBox\\VBoxManage.exe"
            )]
        );
        assert_eq!(
            vboxmanage_candidates(HostOs::MacOs, &none)[0],
            PathBuf::from("/Applications/VirtualBox.app/Contents/MacOS/VBoxManage")
        );
        assert_eq!(
            vboxmanage_candidates(HostOs::Linux, &none)[0],
            PathBuf::from("/usr/bin/VBoxManage")
        );
    }

    #[test]
    fn vboxmanage_is_looked_up_on_path_then_where_the_installers_put_it() {
        let env = |path: &'static str, msi: Option<&'static str>| {
            move |k: &str| -> Option<OsString> {
                match k {
                    "PATH" => Some(path.into()),
                    "VBOX_MSI_INSTALL_PATH" => msi.map(Into::into),
                    _ => None,
                }
            }
        };
        let only = |files: &'static [&'static str]| {
            move |p: &Path| files.iter().any(|f| Path::new(f) == p)
        };
        let find = |os, e: &dyn Fn(&str) -> Option<OsString>, x: &dyn Fn(&Path) -> bool| {
            locate_vboxmanage(os, e, x).map(|p| p.to_string_lossy().into_owned())
        };
        let win_path = "C:\\Windows\\system32; \"D:\\Tools\\VB\\\" ;;C:\\bin\\";
        // Windows: VBoxManage.exe on PATH (quoted folders too) before the installer's folders.
        let both = only(&[
            "D:\\Tools\\VB\\VBoxManage.exe",
            "E:\\VirtualBox\\VBoxManage.exe",
        ]);
        assert_eq!(
            find(
                HostOs::Windows,
                &env(win_path, Some("E:\\VirtualBox")),
                &both
            )
            .as_deref(),
            Some("D:\\Tools\\VB\\VBoxManage.exe")
        );
        // Not on PATH: %VBOX_MSI_INSTALL_PATH%, then the default folder.
        let msi = only(&[
            "E:\\VirtualBox\\VBoxManage.exe",
            "C:\\Program Files\\Oracle\\VirtualBox\\VBoxManage.exe",
        ]);
        assert_eq!(
            find(
                HostOs::Windows,
                &env(win_path, Some("E:\\VirtualBox")),
                &msi
            )
            .as_deref(),
            Some("E:\\VirtualBox\\VBoxManage.exe")
        );
        let default = only(&["C:\\Program Files\\Oracle\\VirtualBox\\VBoxManage.exe"]);
        assert_eq!(
            find(HostOs::Windows, &env(win_path, None), &default).as_deref(),
            Some("C:\\Program Files\\Oracle\\VirtualBox\\VBoxManage.exe")
        );
        // A `VBoxManage` without `.exe` is not VBoxManage on Windows.
        assert_eq!(
            find(
                HostOs::Windows,
                &env(win_path, None),
                &only(&["C:\\bin\\VBoxManage"])
            ),
            None
        );
        // Linux and macOS: PATH, then the installers' places.
        let unix_path = "/opt/vb/bin:/usr/local/bin";
        assert_eq!(
            find(
                HostOs::Linux,
                &env(unix_path, None),
                &only(&["/opt/vb/bin/VBoxManage", "/usr/bin/VBoxManage"])
            )
            .as_deref(),
            Some("/opt/vb/bin/VBoxManage")
        );
        assert_eq!(
            find(
                HostOs::Linux,
                &env(unix_path, None),
                &only(&["/usr/lib/virtualbox/VBoxManage"])
            )
            .as_deref(),
            Some("/usr/lib/virtualbox/VBoxManage")
        );
        assert_eq!(
            find(
                HostOs::MacOs,
                &env(unix_path, None),
                &only(&["/Applications/VirtualBox.app/Contents/MacOS/VBoxManage"])
            )
            .as_deref(),
            Some("/Applications/VirtualBox.app/Contents/MacOS/VBoxManage")
        );
        assert_eq!(find(HostOs::Linux, &env(unix_path, None), &only(&[])), None);
    }

    #[test]
    fn locale_for_vboxmanage() {
        assert_eq!(child_locale(HostOs::Linux, true), "C.UTF-8");
        assert_eq!(child_locale(HostOs::Linux, false), "en_US.UTF-8");
        assert_eq!(child_locale(HostOs::MacOs, true), "en_US.UTF-8");
        assert_eq!(child_locale(HostOs::Windows, true), "en_US.UTF-8");
    }

    #[test]
    fn supported_versions() {
        for (v, ok) in [
            ((5, 2, 44), false),
            ((6, 0, 24), false),
            ((6, 1, 0), true),
            ((6, 1, 50), true),
            ((7, 0, 0), false),
            ((7, 0, 2), true),
            ((7, 1, 4), true),
        ] {
            let got = version_problem(VBoxVersion::new(v.0, v.1, v.2));
            assert_eq!(got.is_none(), ok, "{v:?}: {got:?}");
        }
    }

    #[test]
    fn rosetta_is_seen_through() {
        assert_eq!(effective_arch("x86_64", Some("1\n")), "aarch64");
        assert_eq!(effective_arch("x86_64", Some("0\n")), "x86_64");
        assert_eq!(effective_arch("x86_64", None), "x86_64");
    }
}
