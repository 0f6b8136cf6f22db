//! A small blocking QMP client (QEMU Machine Protocol, JSON lines over a unix socket).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::DriverError;

pub(crate) struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    path: PathBuf,
}

impl Qmp {
    /// Connect, read the greeting and enter command mode.
    pub(crate) fn connect(path: &Path, timeout: Duration) -> Result<Qmp, DriverError> {
        let err = |message: String| DriverError::Qmp {
            socket: path.to_path_buf(),
            message,
        };
        let stream = UnixStream::connect(path).map_err(|e| err(format!("cannot connect: {e}")))?;
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
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| DriverError::Qmp {
                socket: self.path.clone(),
                message: format!("read: {e}"),
            })?;
        if n == 0 {
            return Err(DriverError::Qmp {
                socket: self.path.clone(),
                message: "connection closed".into(),
            });
        }
        serde_json::from_str(&line).map_err(|e| DriverError::Qmp {
            socket: self.path.clone(),
            message: format!("bad JSON {line:?}: {e}"),
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
        self.writer
            .write_all(text.as_bytes())
            .map_err(|e| DriverError::Qmp {
                socket: self.path.clone(),
                message: format!("write: {e}"),
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
                return Err(DriverError::Qmp {
                    socket: self.path.clone(),
                    message: format!(
                        "{command}: {}",
                        e.get("desc").and_then(Value::as_str).unwrap_or("error")
                    ),
                });
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
            return Err(DriverError::Qmp {
                socket: self.path.clone(),
                message: format!("{command_line}: {text}"),
            });
        }
        Ok(text)
    }
}
