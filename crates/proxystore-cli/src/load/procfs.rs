//! Resident memory, open file descriptors and threads of a process (the
//! data server's under `load`, the reader's under `peers`), from /proc: this process's own when the server runs inside it, a child's
//! when the connector's setup started one (redis-server).

use serde::Serialize;

/// Which process a [`Usage`] is of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Server {
    /// This process: an in-process server (zmq, ucx) or none (file), and
    /// the clients' threads unless they run in processes of their own.
    ThisProcess,
    /// A child process the setup started, with its name.
    Child(u32, String),
}

impl Server {
    /// Which process its figures are of; `clients_here`: whether the
    /// clients run as threads of this process (their memory is counted).
    pub(crate) fn describe(&self, clients_here: bool) -> String {
        match (self, clients_here) {
            (Server::ThisProcess, true) => {
                "this process (/proc/self: in-process server and clients)".to_owned()
            }
            (Server::ThisProcess, false) => {
                "this process (/proc/self: in-process server; clients in other processes)"
                    .to_owned()
            }
            (Server::Child(pid, name), _) => format!("{name} (/proc/{pid}, a child process)"),
        }
    }
}

/// One reading of a process's resident memory and open descriptors;
/// `None` where /proc could not be read.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Usage {
    pub(crate) rss_kib: Option<u64>,
    pub(crate) fds: Option<u64>,
    pub(crate) threads: Option<u64>,
}

impl Server {
    /// The server of a connector just set up: the first child process of
    /// this one (the setup's redis-server), else this process.
    pub(crate) fn find() -> Server {
        let me = std::process::id();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Server::ThisProcess;
        };
        let mut children: Vec<(u32, String)> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let (name, ppid) = parse_stat(&stat)?;
                (ppid == me).then_some((pid, name))
            })
            .collect();
        children.sort();
        children
            .into_iter()
            .next()
            .map_or(Server::ThisProcess, |(pid, name)| Server::Child(pid, name))
    }

    fn proc_dir(&self) -> String {
        match self {
            Server::ThisProcess => "/proc/self".to_owned(),
            Server::Child(pid, _) => format!("/proc/{pid}"),
        }
    }

    /// Its resident memory and open descriptors now.
    pub(crate) fn usage(&self) -> Usage {
        let dir = self.proc_dir();
        let status = std::fs::read_to_string(format!("{dir}/status")).ok();
        let fds = std::fs::read_dir(format!("{dir}/fd"))
            .ok()
            .map(|d| d.count() as u64);
        Usage {
            rss_kib: status.as_deref().and_then(|s| status_field(s, "VmRSS:")),
            fds,
            threads: status.as_deref().and_then(|s| status_field(s, "Threads:")),
        }
    }
}

/// The command name and parent pid in a /proc/PID/stat line (the name is
/// in parentheses and may hold spaces).
fn parse_stat(stat: &str) -> Option<(String, u32)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let _state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((name, ppid))
}

/// The number of a /proc/PID/status line (`VmRSS:   1234 kB`: 1234).
fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_and_status_parse() {
        assert_eq!(
            parse_stat("42 (redis server) S 7 42 42 0"),
            Some(("redis server".to_owned(), 7))
        );
        assert_eq!(parse_stat("garbage"), None);
        let status = "Name:\tx\nVmRSS:\t  1234 kB\nThreads:\t7\n";
        assert_eq!(status_field(status, "VmRSS:"), Some(1234));
        assert_eq!(status_field(status, "Threads:"), Some(7));
        let own = Server::ThisProcess.usage();
        assert!(own.rss_kib.unwrap() > 0 && own.fds.unwrap() > 0 && own.threads.unwrap() > 0);
    }
}
