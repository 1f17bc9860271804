//! `edge upgrade`: a graceful binary upgrade that cannot leave the node without a listener.
//!
//! 1. Start the successor (`--binary`, default this executable) with `--config` and
//!    `--upgrade`; it waits on `server.upgrade_sock` for the listening sockets.
//! 2. Wait until that socket exists. A successor that exits or never gets there is reported
//!    and the running edge is never signalled.
//! 3. `SIGQUIT` the running edge (PID from `server.pid_file`): it hands its sockets over and
//!    drains. If the handoff fails anyway it keeps serving (pingora-core PATCH(edge) 5).
//! 4. Wait until the successor owns the PID file and answers the admin `/healthz`.
//!
//! Exit 0 when the successor serves; 1 with the reason otherwise.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::config::EdgeConfig;

/// What `edge upgrade` is told on its command line.
#[derive(Debug, Clone)]
pub struct UpgradeRequest {
    pub config: Option<PathBuf>,
    /// The new binary; this executable when `None`.
    pub binary: Option<PathBuf>,
    /// For each wait: the socket, the PID file, the first answer.
    pub timeout: Duration,
}

pub fn run(request: &UpgradeRequest) -> ExitCode {
    match upgrade(request) {
        Ok(done) => {
            println!(
                "edge upgrade: PID {} serves; PID {} is draining",
                done.new_pid, done.old_pid
            );
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("edge upgrade: {problem}");
            ExitCode::FAILURE
        }
    }
}

struct Upgraded {
    old_pid: i32,
    new_pid: u32,
}

fn upgrade(request: &UpgradeRequest) -> Result<Upgraded, String> {
    let loaded = crate::server::load(request.config.as_deref()).map_err(|e| e.to_string())?;
    let Some(config_path) = loaded.path.clone() else {
        return Err("--config is required: the successor must read the same file".into());
    };
    let config = &loaded.config;
    let old_pid = running_pid(&config.server.pid_file)?;
    let binary = match &request.binary {
        Some(binary) => binary.clone(),
        None => std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?,
    };
    let sock = &config.server.upgrade_sock;
    // A leftover socket file would look like a waiting successor.
    if sock.exists() {
        std::fs::remove_file(sock)
            .map_err(|e| format!("cannot remove the stale {}: {e}", sock.display()))?;
    }
    let mut successor = Command::new(&binary)
        .arg("--config")
        .arg(&config_path)
        .arg("--upgrade")
        .stdin(Stdio::null())
        // Its own process group: a Ctrl-C meant for this command must not reach it.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let new_pid = successor.id();

    let waiting = wait_until(request.timeout, &mut successor, || sock.exists());
    if let Err(problem) = waiting {
        let _ = successor.kill();
        let _ = successor.wait();
        return Err(format!(
            "the successor never waited on {} ({problem}); PID {old_pid} was not signalled and keeps serving",
            sock.display()
        ));
    }
    kill(Pid::from_raw(old_pid), Signal::SIGQUIT)
        .map_err(|e| format!("cannot signal PID {old_pid}: {e}"))?;
    let admin = loopback(config);
    wait_until(request.timeout, &mut successor, || {
        running_pid(&config.server.pid_file).ok() == i32::try_from(new_pid).ok()
            && admin_answers(admin)
    })
    .map_err(|problem| {
        format!(
            "PID {new_pid} did not take over ({problem}); if the handoff failed, PID {old_pid} keeps serving (see its log)"
        )
    })?;
    Ok(Upgraded { old_pid, new_pid })
}

/// The PID in `pid_file`, if that process is alive.
fn running_pid(pid_file: &Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(pid_file)
        .map_err(|e| format!("cannot read server.pid_file {}: {e}", pid_file.display()))?;
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| format!("{} does not hold a PID", pid_file.display()))?;
    kill(Pid::from_raw(pid), None)
        .map_err(|e| format!("PID {pid} from {} is not running: {e}", pid_file.display()))?;
    Ok(pid)
}

/// Polls `done` every 50 ms; fails when the successor exits or `timeout` passes.
fn wait_until(
    timeout: Duration,
    successor: &mut Child,
    mut done: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return Ok(());
        }
        if let Ok(Some(status)) = successor.try_wait() {
            return Err(format!("it exited: {status}"));
        }
        if Instant::now() >= deadline {
            return Err(format!("nothing after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The admin listener as this host reaches it.
fn loopback(config: &EdgeConfig) -> SocketAddr {
    let mut admin = config.admin.address;
    if admin.ip().is_unspecified() {
        admin.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    admin
}

/// Whether `GET /healthz` on the admin listener gets an HTTP 200.
fn admin_answers(admin: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&admin, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}
