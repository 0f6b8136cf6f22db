//! A small blocking QMP client (QEMU Machine Protocol, JSON lines over a unix socket).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::error::QemuError;
use crate::DriverError;

#[cfg(unix)]
type Stream = std::os::unix::net::UnixStream;
/// Windows: std has no unix sockets. The QEMU driver is refused there before any QMP call
/// (`open`); [`connect`] says so if it is reached anyway.
#[cfg(not(unix))]
type Stream = std::net::TcpStream;

#[cfg(unix)]
fn connect(path: &Path) -> std::io::Result<Stream> {
    Stream::connect(path)
}

#[cfg(not(unix))]
fn connect(_path: &Path) -> std::io::Result<Stream> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "QMP over a unix socket is not supported on Windows yet",
    ))
}

pub(crate) struct Qmp {
    reader: BufReader<Stream>,
    writer: Stream,
    path: PathBuf,
}

impl Qmp {
    /// Connect, read the greeting and enter command mode.
    pub(crate) fn connect(path: &Path, timeout: Duration) -> Result<Qmp, DriverError> {
        let err = |message: String| {
            DriverError::from(QemuError::Qmp {
                socket: path.to_path_buf(),
                message,
            })
        };
        let stream = connect(path).map_err(|e| err(format!("cannot connect: {e}")))?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| err(e.to_string()))?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(|e| err(e.to_string()))?;
        let writer = stream.try_clone().map_err(|e| err(e.to_string()))?;
        let mut q = Qmp {
            reader: BufReader::new(stream),
            writer,
            path: path.to_path_buf(),
        };
        let greeting = q.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(err(format!("unexpected greeting {greeting}")));
        }
        q.execute("qmp_capabilities", None)?;
        Ok(q)
    }

    fn read_message(&mut self) -> Result<Value, DriverError> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).map_err(|e| {
            DriverError::from(QemuError::Qmp {
                socket: self.path.clone(),
                message: format!("read: {e}"),
            })
        })?;
        if n == 0 {
            return Err(DriverError::from(QemuError::Qmp {
                socket: self.path.clone(),
                message: "connection closed".into(),
            }));
        }
        serde_json::from_str(&line).map_err(|e| {
            DriverError::from(QemuError::Qmp {
                socket: self.path.clone(),
                message: format!("bad JSON {line:?}: {e}"),
            })
        })
    }

    /// Run a command and return its `return` value; events in between are skipped.
    pub(crate) fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, DriverError> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let text = format!("{msg}\n");
        self.writer.write_all(text.as_bytes()).map_err(|e| {
            DriverError::from(QemuError::Qmp {
                socket: self.path.clone(),
                message: format!("write: {e}"),
            })
        })?;
        loop {
            let reply = self.read_message()?;
            if reply.get("event").is_some() {
                continue;
            }
            if let Some(r) = reply.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = reply.get("error") {
                return Err(DriverError::from(QemuError::Qmp {
                    socket: self.path.clone(),
                    message: format!(
                        "{command}: {}",
                        e.get("desc").and_then(Value::as_str).unwrap_or("error")
                    ),
                }));
            }
        }
    }

    /// Run a human-monitor command (savevm, loadvm, ...); its text output must be empty on success.
    pub(crate) fn hmp(&mut self, command_line: &str) -> Result<String, DriverError> {
        let out = self.execute(
            "human-monitor-command",
            Some(json!({ "command-line": command_line })),
        )?;
        let text = out.as_str().unwrap_or_default().trim().to_string();
        if text.to_lowercase().contains("error") {
            return Err(DriverError::from(QemuError::Qmp {
                socket: self.path.clone(),
                message: format!("{command_line}: {text}"),
            }));
        }
        Ok(text)
    }
}

#[cfg(all(test, unix))]
mod tests {
    //! Property-based fuzzing of the QMP client's reply handling (bounded case count).
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::net::UnixListener;

    /// A one-connection QMP "server" that sends `lines` (each followed by a newline) as soon
    /// as the client has written anything, then closes.
    fn serve(path: &Path, greeting: String, lines: Vec<String>) -> std::thread::JoinHandle<()> {
        let l = UnixListener::bind(path).expect("bind");
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let _ = s.write_all(format!("{greeting}\n").as_bytes());
                let mut r = BufReader::new(s.try_clone().expect("clone"));
                let mut buf = String::new();
                let _ = r.read_line(&mut buf);
                for line in lines {
                    let _ = s.write_all(format!("{line}\n").as_bytes());
                }
            }
        })
    }

    fn reply() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\PC{0,80}",
            Just("{\"return\": {}}".to_string()),
            Just("{\"return\": \"Error: no\"}".to_string()),
            Just("{\"error\": {\"desc\": 7}}".to_string()),
            Just("{\"error\": null}".to_string()),
            Just("{\"event\": \"STOP\"}".to_string()),
            Just("[1,2,3]".to_string()),
            Just("{}".to_string()),
            Just("null".to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_reply_is_an_answer_or_an_error(
            greeting in prop_oneof![Just("{\"QMP\": {}}".to_string()), reply()],
            lines in proptest::collection::vec(reply(), 0..6),
        ) {
            let dir = tempfile::tempdir().expect("tmp");
            let path = dir.path().join("q.sock");
            let server = serve(&path, greeting, lines);
            let r = std::panic::catch_unwind(|| {
                Qmp::connect(&path, Duration::from_secs(2)).and_then(|mut q| q.hmp("info status"))
            });
            prop_assert!(r.is_ok(), "the QMP client panicked");
            let _ = server.join();
        }
    }
}
