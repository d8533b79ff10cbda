//! exechealthz commands: `--cmd` run with `sh -c`, passing when it exits 0.
//!
//! This mode needs `/bin/sh` (and whatever the command calls, such as `nslookup`) in the image;
//! the project's own image has neither, and its manifests use native `--probe`s instead.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// How much of a command's output is kept; the rest is read and dropped so that a chatty
/// command neither blocks on a full pipe nor fills memory.
pub const MAX_OUTPUT: usize = 4096;

/// One `--cmd`/`--url` pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecSpec {
    /// The HTTP path answering for the command.
    pub url: String,
    /// The shell command.
    pub command: String,
}

impl ExecSpec {
    /// The label the command's metrics and `/healthcheck/<label>` use, taken from its url:
    /// `/healthz-kubedns` → `kubedns`, `/healthz` → `healthz`, `/check/a-b` → `check_a_b`.
    pub fn label(&self) -> String {
        let path = self.url.trim_start_matches('/');
        let path = path.strip_prefix("healthz-").unwrap_or(path);
        let label: String = path
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        if label.is_empty() {
            "healthz".into()
        } else {
            label
        }
    }
}

/// What one run of a command produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutcome {
    /// stdout followed by stderr, at most [`MAX_OUTPUT`] bytes of each, lossily decoded.
    pub output: String,
    /// Why it failed; `None` when it exited 0.
    pub error: Option<String>,
}

/// Runs `sh -c <command>` and waits up to `timeout` for it.
///
/// The command runs in its own process group; on timeout the whole group is killed, so a
/// command's children do not outlive it.
pub async fn run(command: &str, timeout: Duration) -> ExecOutcome {
    let deadline = crate::probe::deadline(timeout);
    let mut child = match Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            return ExecOutcome {
                output: String::new(),
                error: Some(format!("cannot run sh (this mode needs a shell): {e}")),
            };
        }
    };
    let pid = child.id();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let finished = async {
        let (out, err, status) =
            tokio::join!(read_capped(stdout), read_capped(stderr), child.wait());
        (out, err, status)
    };
    match tokio::time::timeout_at(deadline, finished).await {
        Ok((mut output, err, status)) => {
            output.push_str(&err);
            let error = match status {
                Ok(status) if status.success() => None,
                Ok(status) => Some(status.to_string()),
                Err(e) => Some(format!("waiting for the command failed: {e}")),
            };
            ExecOutcome { output, error }
        }
        Err(_) => {
            if let Some(pid) = pid {
                kill_group(pid).await;
            }
            ExecOutcome {
                output: String::new(),
                error: Some(format!("command did not finish within {timeout:?}")),
            }
        }
    }
}

async fn read_capped(pipe: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut kept = Vec::new();
    // Errors end the read; whatever arrived is still worth showing.
    let _ = (&mut pipe)
        .take(MAX_OUTPUT as u64)
        .read_to_end(&mut kept)
        .await;
    let _ = tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await;
    String::from_utf8_lossy(&kept).into_owned()
}

/// Kills the process group `pgid` (the command and everything it started). Done through the
/// shell this mode already requires, since signalling a group directly needs `unsafe`.
async fn kill_group(pgid: u32) {
    let killed = Command::new("sh")
        .arg("-c")
        // A negative pid names the group; dash's kill takes no `--` before it.
        .arg(format!("kill -KILL -{pgid}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if let Err(e) = killed {
        tracing::warn!(error = %e, pgid, "cannot kill a timed-out command");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_urls() {
        let cases = [
            ("/healthz-kubedns", "kubedns"),
            ("/healthz-dnsmasq", "dnsmasq"),
            ("/healthz", "healthz"),
            ("/", "healthz"),
            ("/check/a-b", "check_a_b"),
        ];
        for (url, want) in cases {
            let spec = ExecSpec {
                url: url.into(),
                command: "true".into(),
            };
            assert_eq!(spec.label(), want, "{url}");
        }
    }
}
