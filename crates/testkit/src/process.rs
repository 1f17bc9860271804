//! Child processes for tests: spawned with their output captured, killed when dropped,
//! and readiness waits that fail at once when the process has exited.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tempfile::TempDir;

/// A child process killed when dropped, with stdout+stderr captured to a file so a
/// failing test can show what the process said.
pub struct ChildProcess {
    name: String,
    child: Option<Child>,
    log_path: PathBuf,
    _log_dir: Option<TempDir>,
}

impl ChildProcess {
    /// Spawns `program` with `args` and `envs`; output goes to a temp log file.
    pub fn spawn(name: &str, program: &Path, args: &[&str], envs: &[(&str, &str)]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let log_path = dir.path().join(format!("{name}.log"));
        let mut proc = Self::spawn_logging_to(name, program, args, envs, &log_path)?;
        proc._log_dir = Some(dir);
        Ok(proc)
    }

    /// Like [`spawn`](Self::spawn) but appends output to `log_path` (kept across restarts).
    pub fn spawn_logging_to(
        name: &str,
        program: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        log_path: &Path,
    ) -> Result<Self> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .with_context(|| format!("open {}", log_path.display()))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {name} ({})", program.display()))?;
        Ok(Self {
            name: name.to_string(),
            child: Some(child),
            log_path: log_path.to_path_buf(),
            _log_dir: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Everything the process wrote so far.
    pub fn logs(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the process.
    pub fn signal(&self, signal: i32) -> Result<()> {
        let pid = self.pid() as i32;
        // SAFETY-free: nix wraps kill(2).
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::try_from(signal)?,
        )
        .with_context(|| format!("signal {signal} to {} (pid {pid})", self.name))
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Polls `url` (plain HTTP) until it answers 200, failing at once — with the exit
    /// status and the log tail — if the process exits first (a bad config, a port
    /// taken), instead of waiting out `timeout` for a process that is gone.
    pub async fn wait_for_http_ok(&self, url: &str, timeout: Duration) -> Result<()> {
        crate::poll_http_ok(url, timeout, || self.bail_if_exited()).await
    }

    /// Polls until something accepts TCP connections on `addr`; fails at once if the
    /// process exits first.
    pub async fn wait_for_tcp(&self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        crate::poll_tcp(addr, timeout, || self.bail_if_exited()).await
    }

    /// Fails with the exit status and log tail once the process has exited. `waitid` with
    /// `WNOWAIT` looks without reaping, so `&self` is enough and `kill`/`wait_exit` still
    /// find the child.
    fn bail_if_exited(&self) -> Result<()> {
        use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
        if self.child.is_none() {
            bail!("{} was already reaped", self.name);
        }
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(
            Id::Pid(nix::unistd::Pid::from_raw(self.pid() as i32)),
            flags,
        ) {
            Ok(WaitStatus::StillAlive) => Ok(()),
            Ok(status) => bail!(
                "{} exited ({status:?}) before it was ready; its log:\n{}",
                self.name,
                tail(&self.logs(), 40)
            ),
            Err(err) => bail!("{}: waitid: {err}", self.name),
        }
    }

    /// Waits up to `timeout` for the process to exit on its own; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>> {
        let deadline = Instant::now() + timeout;
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| anyhow!("{} already reaped", self.name))?;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() >= deadline {
                bail!("{} still running after {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap (a crash, as far as the process is concerned).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- {} log ({}) -----\n{}\n----- end of {} log -----",
                self.name,
                self.log_path.display(),
                tail(&self.logs(), 80),
                self.name
            );
        }
    }
}

pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
