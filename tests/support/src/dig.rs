//! The real `dig` binary (Debian's bind9-dnsutils) run against a server under test.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};

use hickory_proto::rr::Record;

use crate::records::rr;

const DIG_PATH: &str = "/usr/bin/dig";

/// What `dig` reported for one query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigOutput {
    /// The response code as dig prints it (`NOERROR`, `NXDOMAIN`, `SERVFAIL`, ...);
    /// empty when no response arrived (see [`DigOutput::stdout`]).
    pub status: String,
    /// Header flags, e.g. `["qr", "aa", "rd"]`.
    pub flags: Vec<String>,
    /// Answer section lines, whitespace collapsed to single spaces outside quotes,
    /// e.g. `"svc1.ns.svc.cluster.local. 30 IN A 10.0.0.1"`.
    pub answer: Vec<String>,
    /// Authority section lines (present when `+authority` is passed).
    pub authority: Vec<String>,
    /// Additional section lines (present when `+additional` is passed).
    pub additional: Vec<String>,
    /// dig's full standard output, for failure messages.
    pub stdout: String,
    /// dig's exit code (9 means no reply from the server).
    pub exit_code: Option<i32>,
}

impl DigOutput {
    /// Whether the server replied at all.
    pub fn answered(&self) -> bool {
        !self.status.is_empty()
    }

    /// The answer section parsed into records, for [`crate::assert_records_eq`].
    #[track_caller]
    pub fn answer_records(&self) -> Vec<Record> {
        self.answer.iter().map(|line| rr(line)).collect()
    }

    /// Parses dig's `+comments` output.
    pub fn parse(stdout: &str) -> Self {
        let mut out = DigOutput {
            stdout: stdout.to_owned(),
            ..DigOutput::default()
        };
        #[derive(Clone, Copy)]
        enum Section {
            None,
            Answer,
            Authority,
            Additional,
        }
        let mut section = Section::None;
        for line in stdout.lines() {
            let trimmed = line.trim();
            if let Some(rest) = trimmed.split_once("status: ").map(|(_, rest)| rest)
                && trimmed.contains("->>HEADER<<-")
            {
                out.status = rest.split(',').next().unwrap_or_default().trim().to_owned();
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix(";; flags:") {
                let flags = rest.split(';').next().unwrap_or_default();
                out.flags = flags.split_whitespace().map(str::to_owned).collect();
                continue;
            }
            if trimmed.is_empty() {
                section = Section::None;
                continue;
            }
            if trimmed.starts_with(';') {
                section = match trimmed {
                    ";; ANSWER SECTION:" => Section::Answer,
                    ";; AUTHORITY SECTION:" => Section::Authority,
                    ";; ADDITIONAL SECTION:" => Section::Additional,
                    _ => section,
                };
                continue;
            }
            let target = match section {
                Section::None => continue,
                Section::Answer => &mut out.answer,
                Section::Authority => &mut out.authority,
                Section::Additional => &mut out.additional,
            };
            target.push(collapse_whitespace(trimmed));
        }
        out
    }
}

/// Whether a usable `dig` binary is installed; tests that need it skip without it.
pub fn dig_available() -> bool {
    Command::new(dig_program())
        .arg("-v")
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Runs `dig @ip -p port +time=2 +tries=1 +noall +answer +comments ARGS` and parses the output.
///
/// `args` come last, so they can add sections (`+authority`) or override defaults
/// (`+tcp`, `+tries=3`). This blocks the calling thread; from a single-threaded
/// tokio test whose server runs on the same runtime, use [`dig_async`] instead.
///
/// # Panics
/// If `dig` cannot be started.
pub fn dig(server: SocketAddr, args: &[&str]) -> DigOutput {
    let output = Command::new(dig_program())
        .args(dig_args(server, args))
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", dig_program()));
    to_dig_output(&output)
}

/// [`dig`] without blocking the async runtime.
///
/// # Panics
/// If `dig` cannot be started.
pub async fn dig_async(server: SocketAddr, args: &[&str]) -> DigOutput {
    let output = tokio::process::Command::new(dig_program())
        .args(dig_args(server, args))
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", dig_program()));
    to_dig_output(&output)
}

fn dig_program() -> &'static str {
    // Fall back to PATH so a dig installed elsewhere still works.
    if Path::new(DIG_PATH).exists() {
        DIG_PATH
    } else {
        "dig"
    }
}

fn dig_args(server: SocketAddr, args: &[&str]) -> Vec<String> {
    let mut all = vec![
        format!("@{}", server.ip()),
        "-p".to_owned(),
        server.port().to_string(),
        "+time=2".to_owned(),
        "+tries=1".to_owned(),
        "+noall".to_owned(),
        "+answer".to_owned(),
        "+comments".to_owned(),
    ];
    all.extend(args.iter().map(|arg| (*arg).to_owned()));
    all
}

fn to_dig_output(output: &Output) -> DigOutput {
    let mut parsed = DigOutput::parse(&String::from_utf8_lossy(&output.stdout));
    parsed.exit_code = output.status.code();
    parsed
}

/// Collapses runs of whitespace to one space, leaving quoted strings (TXT data) alone.
fn collapse_whitespace(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_quotes = false;
    let mut escaped = false;
    let mut pending_space = false;
    for c in line.chars() {
        if in_quotes {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
            continue;
        }
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        if c == '"' {
            in_quotes = true;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 4242
;; flags: qr aa rd; QUERY: 1, ANSWER: 2, AUTHORITY: 1, ADDITIONAL: 1
;; WARNING: recursion requested but not available

;; OPT PSEUDOSECTION:
; EDNS: version: 0, flags:; udp: 1232
;; ANSWER SECTION:
svc1.ns.svc.cluster.local. 30\tIN\tA\t10.0.0.1
svc1.ns.svc.cluster.local. 30\tIN\tTXT\t\"a  b\"

;; AUTHORITY SECTION:
cluster.local.\t\t30\tIN\tSOA\tns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 30

";

    #[test]
    fn parses_header_flags_and_sections() {
        let out = DigOutput::parse(SAMPLE);
        assert_eq!(out.status, "NOERROR");
        assert_eq!(out.flags, ["qr", "aa", "rd"]);
        assert_eq!(
            out.answer,
            [
                "svc1.ns.svc.cluster.local. 30 IN A 10.0.0.1",
                "svc1.ns.svc.cluster.local. 30 IN TXT \"a  b\"",
            ]
        );
        assert_eq!(
            out.authority,
            [
                "cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 30"
            ]
        );
        assert!(out.additional.is_empty());
        assert!(out.answered());
        assert_eq!(out.answer_records().len(), 2);
    }

    #[test]
    fn no_reply_has_no_status() {
        let out = DigOutput::parse(";; communications error to 127.0.0.1#1234: timed out\n");
        assert!(!out.answered());
        assert!(out.answer.is_empty());
    }
}
