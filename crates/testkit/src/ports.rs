//! Free loopback ports for child processes, reserved so that no two callers — in this
//! process or in any other test process on the machine — are handed the same port.
//!
//! A port from `bind(:0)` is only "free a moment ago": the kernel may hand the same
//! ephemeral port to the next `bind(:0)` once the probe socket is closed, and it hands
//! ephemeral ports to every outgoing connection too. So ports come from outside the
//! kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), and each one is
//! claimed with an exclusive `flock` on a file named after it, held until this process
//! exits. A port that something else already listens on fails the bind probe and is
//! skipped.

use std::fs::{File, OpenOptions};
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::Mutex;

use nix::fcntl::{Flock, FlockArg};

/// The locks of every port this process was handed; never released before exit, so a
/// port is never handed out twice even after the child that used it is gone.
static HELD: Mutex<Vec<Flock<File>>> = Mutex::new(Vec::new());

/// Below this, ports are for things people run by hand (and the dev stack's fixed ports).
const LOWEST: u16 = 10_000;

fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(str::parse::<u16>);
            Some((parts.next()?.ok()?, parts.next()?.ok()?))
        })
        .unwrap_or((32_768, 60_999))
}

/// The ports to draw from: the larger stretch outside the ephemeral range, above `LOWEST`.
fn candidate_range() -> std::ops::Range<u32> {
    let (lo, hi) = ephemeral_range();
    let below = u32::from(LOWEST)..u32::from(lo);
    let above = u32::from(hi) + 1..65_536;
    if below.len() >= above.len() {
        below
    } else {
        above
    }
}

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("testkit-ports")
}

fn bindable(port: u16, udp_too: bool) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
        && (!udp_too || UdpSocket::bind(("127.0.0.1", port)).is_ok())
}

/// Claims a port free on TCP (and UDP when `udp_too`) on 127.0.0.1.
pub(crate) fn reserve(udp_too: bool) -> u16 {
    let range = candidate_range();
    let dir = lock_dir();
    std::fs::create_dir_all(&dir).expect("create the port lock directory");
    let span = range.len() as u32;
    assert!(
        span > 100,
        "no port range outside the ephemeral one: {range:?}"
    );
    // A random starting point spreads parallel test processes over the range.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let start = (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % span;
    let mut held = HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for offset in 0..span {
        let port = (range.start + (start + offset) % span) as u16;
        let path = dir.join(port.to_string());
        let Ok(file) = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        else {
            continue;
        };
        let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            continue; // another test process holds it
        };
        if bindable(port, udp_too) {
            held.push(lock);
            return port;
        }
    }
    panic!("no free port in {range:?} (locks in {})", dir.display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn reserved_ports_are_never_handed_out_twice() {
        let ports: Vec<u16> = (0..200).map(|i| reserve(i % 2 == 0)).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
    }

    #[test]
    fn reserved_ports_lie_outside_the_ephemeral_range() {
        let (lo, hi) = ephemeral_range();
        let port = reserve(false);
        assert!(!(lo..=hi).contains(&port), "{port} is in {lo}..={hi}");
    }

    #[test]
    fn a_port_held_by_another_process_lock_is_skipped() {
        // A second open file description of the same lock file stands in for another
        // process: flock locks belong to the open file description, not the process.
        let port = reserve(false);
        let other = OpenOptions::new()
            .write(true)
            .open(lock_dir().join(port.to_string()))
            .expect("open lock file");
        assert!(
            Flock::lock(other, FlockArg::LockExclusiveNonblock).is_err(),
            "the lock of a handed-out port must stay held"
        );
    }
}
