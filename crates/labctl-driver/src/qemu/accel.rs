//! Is KVM really usable? `/dev/kvm` can open and a 16-bit boot sector can run while real
//! nodes abort at start (nested KVM: "failed to set MSR 0x10a") or hang before their first
//! console line (`-cpu qemu64`). So the probe starts QEMU exactly as nodes are started (same
//! machine type, same `-cpu` model and flags, same accelerator) and boots the box's own kernel
//! with a one-file initramfs whose `/init` prints a marker: the marker proves the vCPU was
//! set up, the kernel ran in long mode and user space ran. A box without a kernel (it boots
//! from its disk) gets a boot sector instead, still with the nodes' CPU model.
//!
//! The verdict is cached per host (kernel, QEMU binary, CPU, probe kind). When a node started
//! under KVM still fails, the driver records a TCG verdict with the reason
//! ([`Verdict::fallback`]) and every later start uses TCG without retrying KVM.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::exec::Cmd;

const MARKER: &str = "LABCTL-KVM-OK";
/// Bump when what the probe proves changes: old verdicts are then re-tested.
const PROBE_REVISION: u32 = 2;
const CACHE_FILE: &str = "accel.json";

/// The accelerator a machine really runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Kvm,
    Tcg,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Kvm => "kvm",
            Engine::Tcg => "tcg",
        }
    }
}

/// Where a verdict came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The probe decided.
    #[default]
    Probe,
    /// A node started under KVM failed; the lab went on under TCG.
    NodeFailed,
}

/// The acceleration answer for this host, cached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub accel: Engine,
    pub reason: String,
    pub key: String,
    #[serde(default)]
    pub source: Source,
    /// How long the probe took, in milliseconds (0 when no QEMU was started).
    #[serde(default)]
    pub probe_ms: u64,
}

/// What the probe boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeImage {
    /// The box's kernel, with a generated initramfs.
    Kernel(PathBuf),
    /// A boot sector (boxes that boot from their disk).
    BootSector,
}

/// Everything the probe needs; `cpu` is the argv the nodes get for KVM (`-accel kvm -cpu host`).
#[derive(Debug, Clone)]
pub struct ProbeSpec<'a> {
    pub qemu: &'a Path,
    pub kvm_device: &'a Path,
    pub image: ProbeImage,
    pub kvm_argv: Vec<String>,
    pub timeout: Duration,
}

/// A real-mode boot sector: print MARKER on COM1, then halt.
pub fn boot_sector() -> Vec<u8> {
    let mut code = vec![0xBA, 0xF8, 0x03]; // mov dx, 0x3f8
    for b in MARKER.bytes().chain(*b"\r\n") {
        code.extend_from_slice(&[0xB0, b, 0xEE]); // mov al, b ; out dx, al
    }
    code.extend_from_slice(&[0xFA, 0xF4, 0xEB, 0xFD]); // cli ; hlt ; jmp back to hlt
    code.resize(510, 0);
    code.extend_from_slice(&[0x55, 0xAA]);
    code
}

/// A static x86-64 Linux ELF executable: `write(1, "MARKER\n")`, then `pause()` forever.
/// The kernel opens /dev/console (the serial port with `console=ttyS0`) as its fds 0-2.
pub fn init_elf() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const CODE_OFF: u64 = 64 + 56;
    let msg = format!("{MARKER}\n");
    let len = u32::try_from(msg.len()).unwrap_or(0);
    let mut code: Vec<u8> = Vec::new();
    code.extend_from_slice(&[0xB8, 1, 0, 0, 0]); // mov eax, 1 (write)
    code.extend_from_slice(&[0xBF, 1, 0, 0, 0]); // mov edi, 1
    code.extend_from_slice(&[0x48, 0x8D, 0x35]); // lea rsi, [rip + rel32]
    code.extend_from_slice(&16i32.to_le_bytes()); // msg is 16 bytes after the next instruction
    code.push(0xBA); // mov edx, len
    code.extend_from_slice(&len.to_le_bytes());
    code.extend_from_slice(&[0x0F, 0x05]); // syscall
    code.extend_from_slice(&[0xB8, 34, 0, 0, 0]); // loop: mov eax, 34 (pause)
    code.extend_from_slice(&[0x0F, 0x05]); // syscall
    code.extend_from_slice(&[0xEB, 0xF7]); // jmp loop
    code.extend_from_slice(msg.as_bytes());
    let size = CODE_OFF + code.len() as u64;
    let mut e: Vec<u8> = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    e.extend_from_slice(&[0x7F, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&0x3Eu16.to_le_bytes()); // x86-64
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&(BASE + CODE_OFF).to_le_bytes()); // entry
    e.extend_from_slice(&64u64.to_le_bytes()); // phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // shoff
    e.extend_from_slice(&0u32.to_le_bytes()); // flags
    e.extend_from_slice(&64u16.to_le_bytes()); // ehsize
    e.extend_from_slice(&56u16.to_le_bytes()); // phentsize
    e.extend_from_slice(&1u16.to_le_bytes()); // phnum
    e.extend_from_slice(&[0; 6]); // shentsize, shnum, shstrndx
    e.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    e.extend_from_slice(&5u32.to_le_bytes()); // R + X
    e.extend_from_slice(&0u64.to_le_bytes()); // offset
    e.extend_from_slice(&BASE.to_le_bytes()); // vaddr
    e.extend_from_slice(&BASE.to_le_bytes()); // paddr
    e.extend_from_slice(&size.to_le_bytes()); // filesz
    e.extend_from_slice(&size.to_le_bytes()); // memsz
    e.extend_from_slice(&0x1000u64.to_le_bytes()); // align
    e.extend_from_slice(&code);
    e
}

/// A newc cpio archive holding `/init` (and `/dev/console`, in case the kernel's built-in
/// initramfs lacks it).
pub fn initramfs() -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        let namesize = name.len() + 1;
        let header = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            0
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
    let mut out = Vec::new();
    entry(&mut out, 1, "dev", 0o040_755, (0, 0), &[]);
    entry(&mut out, 2, "dev/console", 0o020_600, (5, 1), &[]);
    entry(&mut out, 3, "init", 0o100_755, (0, 0), &init_elf());
    entry(&mut out, 0, "TRAILER!!!", 0, (0, 0), &[]);
    out
}

/// What identifies "this host" for a cached verdict: re-tested when the kernel, the QEMU
/// binary, the CPU or what the probe boots changes.
pub fn cache_key(qemu: &Path, image: &ProbeImage) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let (mtime, size) = std::fs::metadata(qemu).map_or((0, 0), |m| {
        let t = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        (t, m.len())
    });
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let kind = match image {
        ProbeImage::Kernel(_) => "kernel",
        ProbeImage::BootSector => "bootsector",
    };
    format!(
        "r{PROBE_REVISION}|{}|{}|{mtime}|{size}|{cpu}|{kind}",
        kernel.trim(),
        qemu.display()
    )
}

/// The cached verdict, whatever host it was made on (for `labctl doctor`).
pub fn cached(cache_dir: &Path) -> Option<Verdict> {
    let text = std::fs::read_to_string(cache_dir.join(CACHE_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Record a verdict (atomically; failures to write only cost a re-probe later).
pub fn store(cache_dir: &Path, v: &Verdict) {
    if std::fs::create_dir_all(cache_dir).is_err() {
        return;
    }
    if let Ok(text) = serde_json::to_string_pretty(v) {
        let _ = crate::files::write_atomic(&cache_dir.join(CACHE_FILE), text.as_bytes());
    }
}

/// The cached verdict when it is for this host, else a fresh probe (recorded).
pub fn detect(spec: &ProbeSpec<'_>, cache_dir: &Path) -> Verdict {
    let key = cache_key(spec.qemu, &spec.image);
    if let Some(v) = cached(cache_dir)
        && v.key == key
    {
        return v;
    }
    reprobe(spec, cache_dir)
}

/// Probe now, ignoring the cache, and record the answer.
pub fn reprobe(spec: &ProbeSpec<'_>, cache_dir: &Path) -> Verdict {
    let key = cache_key(spec.qemu, &spec.image);
    let started = Instant::now();
    let (accel, reason) = probe(spec);
    let v = Verdict {
        accel,
        reason,
        key,
        source: Source::Probe,
        probe_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    store(cache_dir, &v);
    v
}

fn probe(spec: &ProbeSpec<'_>) -> (Engine, String) {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(spec.kvm_device)
        .is_err()
    {
        return (
            Engine::Tcg,
            format!("{} is missing or not accessible", spec.kvm_device.display()),
        );
    }
    let dir = match tempfile::Builder::new().prefix("labctl-probe-").tempdir() {
        Ok(d) => d,
        Err(e) => return (Engine::Tcg, format!("cannot create a probe directory: {e}")),
    };
    let serial = dir.path().join("serial.txt");
    let mut argv: Vec<String> = vec!["-name".into(), "labctl-probe,process=labctl-probe".into()];
    argv.extend(spec.kvm_argv.iter().cloned());
    argv.extend(
        [
            "-m",
            "128",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ]
        .map(String::from),
    );
    argv.push("-serial".into());
    argv.push(format!("file:{}", serial.display()));
    match &spec.image {
        ProbeImage::Kernel(kernel) => {
            let initrd = dir.path().join("probe.cpio");
            if let Err(e) = std::fs::write(&initrd, initramfs()) {
                return (
                    Engine::Tcg,
                    format!("cannot write the probe initramfs: {e}"),
                );
            }
            argv.extend([
                "-kernel".into(),
                kernel.display().to_string(),
                "-initrd".into(),
                initrd.display().to_string(),
                "-append".into(),
                "console=ttyS0 quiet rdinit=/init panic=-1".into(),
            ]);
        }
        ProbeImage::BootSector => {
            let img = dir.path().join("probe.img");
            if let Err(e) = std::fs::write(&img, boot_sector()) {
                return (Engine::Tcg, format!("cannot write the probe image: {e}"));
            }
            argv.extend([
                "-drive".into(),
                format!("file={},format=raw,if=ide", img.display()),
            ]);
        }
    }
    let started = Instant::now();
    let result = match Cmd::new(spec.qemu).args(&argv).spawn_child() {
        Err(e) => (Engine::Tcg, format!("the KVM probe did not start: {e}")),
        Ok(mut child) => {
            let mut verdict = None;
            while started.elapsed() < spec.timeout {
                if std::fs::read_to_string(&serial).is_ok_and(|s| s.contains(MARKER)) {
                    verdict = Some((
                        Engine::Kvm,
                        format!(
                            "a KVM guest booted to user space in {} ms",
                            started.elapsed().as_millis()
                        ),
                    ));
                    break;
                }
                if let Ok(Some(st)) = child.try_wait() {
                    let mut stderr = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        use std::io::Read;
                        let _ = e.read_to_string(&mut stderr);
                    }
                    verdict = Some((
                        Engine::Tcg,
                        format!(
                            "QEMU under KVM exited at start ({}){}",
                            crate::exec::describe_status(st),
                            first_error_line(&stderr)
                                .map(|l| format!(": {l}"))
                                .unwrap_or_default()
                        ),
                    ));
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let _ = child.kill();
            let _ = child.wait();
            verdict.unwrap_or_else(|| {
                (
                    Engine::Tcg,
                    format!(
                        "a KVM guest printed nothing within {} s (nested KVM that hangs)",
                        spec.timeout.as_secs()
                    ),
                )
            })
        }
    };
    tracing::info!(accel = ?result.0, reason = %result.1, "acceleration probe");
    result
}

/// The first line of QEMU's stderr that says what went wrong.
pub fn first_error_line(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .find(|l| l.contains("error"))
        .or_else(|| lines.first())
        .map(|l| {
            let l = l.strip_prefix("qemu-system-x86_64: ").unwrap_or(l);
            l.chars().take(200).collect()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_sector_is_bootable_and_prints_marker() {
        let s = boot_sector();
        assert_eq!(s.len(), 512);
        assert_eq!(&s[510..], &[0x55, 0xAA]);
        for b in MARKER.bytes() {
            assert!(s.windows(3).any(|w| w == [0xB0, b, 0xEE]));
        }
    }

    /// The init program really runs on this (x86-64 Linux) host and prints the marker.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn init_elf_runs_and_prints_the_marker() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let exe = dir.path().join("init");
        std::fs::write(&exe, init_elf()).expect("write");
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // It pauses forever after printing, as an init must: `timeout` ends it.
        let out = Cmd::new("timeout")
            .arg("1")
            .arg(&exe)
            .timeout(Duration::from_secs(20))
            .run_unchecked()
            .expect("run the init");
        assert_eq!(out.stdout, format!("{MARKER}\n"));
        assert_eq!(
            out.status.code(),
            Some(124),
            "still running when timeout ended it"
        );
    }

    #[test]
    fn initramfs_is_newc_with_init_and_trailer() {
        let c = initramfs();
        assert!(c.starts_with(b"070701"));
        assert_eq!(c.len() % 4, 0);
        let text = String::from_utf8_lossy(&c);
        for name in ["dev/console\0", "init\0", "TRAILER!!!\0"] {
            assert!(text.contains(name), "{name}");
        }
        let elf = init_elf();
        assert!(c.windows(elf.len()).any(|w| w == elf.as_slice()));
    }

    /// A host without KVM: TCG at once, without starting QEMU (the QEMU path is bogus), and
    /// the verdict is cached for the next run.
    #[test]
    fn no_kvm_device_means_tcg_without_starting_qemu() {
        let cache = tempfile::tempdir().expect("tmp");
        let spec = ProbeSpec {
            qemu: Path::new("/nonexistent/qemu-system-x86_64"),
            kvm_device: Path::new("/nonexistent/kvm"),
            image: ProbeImage::BootSector,
            kvm_argv: vec!["-accel".into(), "kvm".into()],
            timeout: Duration::from_secs(5),
        };
        let v = detect(&spec, cache.path());
        assert_eq!(v.accel, Engine::Tcg);
        assert!(
            v.reason.contains("/nonexistent/kvm is missing"),
            "{}",
            v.reason
        );
        assert_eq!(v.source, Source::Probe);
        assert_eq!(cached(cache.path()), Some(v));
    }

    #[test]
    fn key_changes_with_the_probe_kind() {
        let q = Path::new("/usr/bin/qemu-system-x86_64");
        assert_ne!(
            cache_key(q, &ProbeImage::BootSector),
            cache_key(q, &ProbeImage::Kernel("/k".into()))
        );
        assert!(cache_key(q, &ProbeImage::BootSector).starts_with(&format!("r{PROBE_REVISION}|")));
    }

    #[test]
    fn error_line_prefers_the_error() {
        let e = "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\nqemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.\n";
        assert_eq!(
            first_error_line(e).as_deref(),
            Some("error: failed to set MSR 0x10a to 0x69")
        );
        assert_eq!(first_error_line("  \n"), None);
    }
}
