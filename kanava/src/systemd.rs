//! The systemd service protocols, without linking libsystemd: a `Type=notify` service tells
//! systemd that it is ready (every listener bound), reloading, stopping (draining), and alive
//! (the watchdog), by datagrams to the socket named in `$NOTIFY_SOCKET`; and a socket-activated
//! service takes its listening sockets from systemd (`LISTEN_FDS`). Without those variables
//! (not run by systemd) nothing is sent and nothing is taken.

use std::io;
use std::net::SocketAddr as InetAddr;
use std::os::fd::FromRawFd as _;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Mutex;
use std::time::Duration;

/// Sends `state` (e.g. `READY=1`, newline-separated assignments) to systemd; `Ok(false)` when
/// the process is not run by systemd's notify protocol.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let address = match path.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(&path)?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &address)?;
    Ok(true)
}

/// The notification that a reload starts: `RELOADING=1` with the monotonic clock's time,
/// as systemd requires of a service that reloads (it is followed by `READY=1`).
pub fn reloading() -> String {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000;
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

/// How often systemd expects `WATCHDOG=1` (half of `WatchdogSec=`, as sd_watchdog_enabled
/// advises), when it watches this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok()? != std::process::id()
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// The names kanava's listeners have in a socket unit (`FileDescriptorName=`).
pub const LISTENER_NAMES: [&str; 4] = ["mles", "ssh", "debug-me", "admin"];

/// The first file descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// Listening sockets systemd passed to this process (socket activation, `kanava.socket`). A
/// listener takes the socket named after it (`FileDescriptorName=mles`, …), or else the one
/// listening on its configured address (so one socket unit with a `ListenStream=` per listener
/// works); it binds its address itself only when neither was passed. Connections that arrive
/// while kanava (re)starts then wait in the socket's queue instead of being refused.
#[derive(Debug, Default)]
pub struct InheritedListeners(Mutex<Vec<(String, std::net::TcpListener)>>);

/// Why the sockets systemd passed cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// `LISTEN_FDS` or `LISTEN_FDNAMES` is not what the protocol says.
    #[error("socket activation: {0}")]
    Protocol(String),
    /// A socket that is not a listening TCP socket.
    #[error(
        "socket activation: the socket named {0:?} is not a listening TCP socket (ListenStream=)"
    )]
    NotListening(String),
    /// Sockets no listener took.
    #[error(
        "socket activation: no listener takes {0}: name a socket mles, ssh, debug-me or admin (FileDescriptorName=), or listen on the address the configuration gives that listener"
    )]
    Unused(String),
}

impl InheritedListeners {
    /// Takes the socket named `name`, or else the one listening on `address`, if systemd
    /// passed one.
    pub fn take(&self, name: &str, address: InetAddr) -> Option<std::net::TcpListener> {
        let mut sockets = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let at = sockets.iter().position(|(n, _)| n == name).or_else(|| {
            sockets
                .iter()
                .position(|(_, s)| s.local_addr().is_ok_and(|a| a == address))
        })?;
        Some(sockets.remove(at).1)
    }

    /// Fails when a passed socket was taken by no listener.
    pub fn all_taken(&self) -> Result<(), ActivationError> {
        let sockets = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if sockets.is_empty() {
            return Ok(());
        }
        let unused: Vec<String> = sockets
            .iter()
            .map(|(name, socket)| match socket.local_addr() {
                Ok(address) => format!("the socket {address} (named {name:?})"),
                Err(_) => format!("the socket named {name:?}"),
            })
            .collect();
        Err(ActivationError::Unused(unused.join(", ")))
    }
}

/// Takes the listening sockets systemd passed to this process, and removes the variables
/// that named them, so that programs kanava starts (sendmail) do not take them for theirs.
/// Without socket activation (no `LISTEN_PID` naming this process) there are none.
///
/// # Safety
/// Changes the environment: call it before any other thread runs.
pub unsafe fn take_listeners() -> Result<InheritedListeners, ActivationError> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
        == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    for variable in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY: the caller runs this before any other thread exists.
        unsafe { std::env::remove_var(variable) };
    }
    if !for_us {
        return Ok(InheritedListeners::default());
    }
    let count: i32 = count
        .as_deref()
        .and_then(|n| n.parse().ok())
        .filter(|n| (0..=64).contains(n))
        .ok_or_else(|| ActivationError::Protocol(format!("LISTEN_FDS={count:?}")))?;
    // Without names (an older systemd), each socket is "unknown" and matched by address.
    let names: Vec<String> = match names {
        Some(names) => names.split(':').map(str::to_owned).collect(),
        None => vec!["unknown".to_owned(); count as usize],
    };
    if names.len() != count as usize {
        return Err(ActivationError::Protocol(format!(
            "{count} sockets but {} names in LISTEN_FDNAMES",
            names.len()
        )));
    }
    let mut sockets = Vec::new();
    for (offset, name) in names.into_iter().enumerate() {
        let fd = LISTEN_FDS_START + offset as i32;
        if !is_listening_tcp(fd) {
            return Err(ActivationError::NotListening(name));
        }
        // Not inherited by programs kanava starts.
        // SAFETY: fcntl on a descriptor systemd passed to this process.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        // SAFETY: systemd passed `fd` to this process for it to own; it is taken only once.
        sockets.push((name, unsafe { std::net::TcpListener::from_raw_fd(fd) }));
    }
    Ok(InheritedListeners(Mutex::new(sockets)))
}
/// Whether `fd` is a stream socket of an internet family that listens.
fn is_listening_tcp(fd: i32) -> bool {
    let option = |level, name| {
        let mut value: libc::c_int = 0;
        let mut length = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `length` bytes into `value`.
        let result = unsafe {
            libc::getsockopt(
                fd,
                level,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut length,
            )
        };
        (result == 0).then_some(value)
    };
    option(libc::SOL_SOCKET, libc::SO_TYPE) == Some(libc::SOCK_STREAM)
        && option(libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Some(1)
        && matches!(
            option(libc::SOL_SOCKET, libc::SO_DOMAIN),
            Some(libc::AF_INET | libc::AF_INET6)
        )
}
