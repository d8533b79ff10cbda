//! What a running process holds, read from `/proc` (Linux): resident memory, threads and open
//! file descriptors, for checking that a long run does not leak them; and the datagrams the
//! kernel dropped on a UDP port, for telling lost queries from unanswered ones.

use std::path::PathBuf;

/// One reading of a process's resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Resident set size (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Threads (`Threads` in `/proc/PID/status`).
    pub threads: u64,
    /// Entries of `/proc/PID/fd`.
    pub fds: u64,
}

/// Reads `pid`'s usage.
///
/// # Errors
/// When the process is gone, `/proc` is not mounted, or its status lacks a field.
pub fn usage(pid: u32) -> std::io::Result<Usage> {
    let dir = PathBuf::from(format!("/proc/{pid}"));
    let status = std::fs::read_to_string(dir.join("status"))?;
    let field = |name: &str| -> std::io::Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("/proc/{pid}/status has no {name}"),
                )
            })
    };
    let fds = std::fs::read_dir(dir.join("fd"))?.count();
    Ok(Usage {
        rss_kib: field("VmRSS")?,
        threads: field("Threads")?,
        fds: u64::try_from(fds).unwrap_or(u64::MAX),
    })
}

/// Datagrams the kernel dropped, since they were opened, on the UDP sockets bound to local
/// `port` (IPv4 and IPv6, any address): the `drops` column of `/proc/net/udp{,6}`, which counts
/// mostly datagrams that arrived while the socket's receive buffer was full.
///
/// # Errors
/// When `/proc/net/udp` cannot be read.
pub fn udp_drops(port: u16) -> std::io::Result<u64> {
    let mut drops = 0;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let text = match std::fs::read_to_string(table) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && table.ends_with('6') => {
                continue;
            }
            Err(e) => return Err(e),
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|local| local.rsplit_once(':'))
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            if local_port == Some(port) {
                drops += fields
                    .last()
                    .and_then(|d| d.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Ok(drops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_threads_and_descriptors() {
        let usage = usage(std::process::id()).expect("read /proc/self");
        assert!(usage.rss_kib > 0, "{usage:?}");
        assert!(usage.threads >= 1, "{usage:?}");
        // stdin, stdout, stderr at least, and the directory handle reading them.
        assert!(usage.fds >= 3, "{usage:?}");
    }

    #[test]
    fn a_process_that_does_not_exist_is_an_error() {
        // Above the kernel's pid_max limit (2^22).
        assert!(usage(u32::MAX).is_err());
    }

    #[test]
    fn datagrams_past_a_full_receive_buffer_are_counted_as_dropped() {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = receiver.local_addr().expect("address").port();
        assert_eq!(udp_drops(port).expect("read /proc/net/udp"), 0);
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        // Far more than any default receive buffer holds, and never read.
        let datagram = [0u8; 1000];
        for _ in 0..20_000 {
            let _ = sender.send_to(&datagram, ("127.0.0.1", port));
        }
        assert!(udp_drops(port).expect("read /proc/net/udp") > 0);
    }
}
