//! Binary upgrade without a refused connection (`docs/design/reload.md`): the data
//! directory's lock, the listening sockets a process inherits from the one it replaces
//! (or from systemd's socket activation), and starting that successor.
//!
//! The order: at SIGUSR2 the running process starts its successor (the same command line,
//! the binary now on disk) with its listening sockets open. The successor checks its
//! config and catalog, then asks the old process to stop (SIGTERM) and waits for the data
//! directory's lock. The old process stops accepting, drains, closes its journal and hot
//! tier, and exits, which frees the lock. Connections that arrive meanwhile wait in the
//! sockets' accept queue, which stays open because the successor holds the sockets. Only
//! the lock's holder opens the journal and the hot tier's index.

use crate::error::{Error, ErrorKind, Result};
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The environment variable with the pid of the process a successor replaces.
const FROM_ENV: &str = "STRATA_UPGRADE_FROM";

/// The data directory's lock file (`strata.lock`, holding the owner's pid): held for the
/// life of a serving process, freed by the kernel when it exits however it exits.
pub struct DataLock {
    _file: std::fs::File,
    path: PathBuf,
}

impl DataLock {
    /// Takes the lock of `dir`, waiting up to `wait` for a process that is handing over.
    /// `Conflict` naming the holder when it is still held then.
    pub fn acquire(dir: &Path, wait: Duration) -> Result<DataLock> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("strata.lock");
        let file = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path)?;
        let started = Instant::now();
        let mut said = false;
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(e) if e == rustix::io::Errno::WOULDBLOCK && started.elapsed() < wait => {
                    if !said {
                        tracing::info!(lock = %path.display(), "waiting for the process that holds the data directory");
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "{} is in use by strata (pid {}); one process per data directory",
                            dir.display(),
                            holder.trim()
                        ),
                    ));
                }
                Err(e) => return Err(Error::internal("locking the data directory", e)),
            }
        }
        file.set_len(0)?;
        std::io::Write::write_all(&mut &file, std::process::id().to_string().as_bytes())?;
        Ok(DataLock { _file: file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Listening sockets this process inherited, by role (`main`, `admin`, `plain`).
pub struct Inherited {
    listeners: HashMap<String, std::net::TcpListener>,
}

impl Inherited {
    /// What this process was handed: a predecessor's sockets (it is a successor: they come
    /// over its stdin, a Unix socket, as `SCM_RIGHTS`), or systemd's (`LISTEN_FDS`: the main
    /// socket first, then the admin one, then the plain one).
    pub fn from_env() -> Result<Option<Inherited>> {
        let mut listeners = HashMap::new();
        if let Ok(roles) = std::env::var(ROLES_ENV) {
            let stdin = std::io::stdin().as_fd().try_clone_to_owned()?;
            let fds = receive(&stdin, roles.split(',').count())?;
            for (role, fd) in roles.split(',').zip(fds) {
                listeners.insert(role.to_owned(), std::net::TcpListener::from(fd));
            }
        } else {
            let mut fds = listenfd::ListenFd::from_env();
            for (i, role) in ["main", "admin", "plain"].into_iter().enumerate().take(fds.len()) {
                if let Some(l) = fds.take_tcp_listener(i)? {
                    listeners.insert(role.to_owned(), l);
                }
            }
        }
        Ok((!listeners.is_empty()).then_some(Inherited { listeners }))
    }

    /// The socket of `role`, as a listener ready for tokio.
    pub fn take(&mut self, role: &str) -> Result<Option<tokio::net::TcpListener>> {
        let Some(l) = self.listeners.remove(role) else { return Ok(None) };
        l.set_nonblocking(true)?;
        Ok(Some(tokio::net::TcpListener::from_std(l)?))
    }
}

/// The environment variable that names, in order, the roles of the sockets a successor
/// receives.
const ROLES_ENV: &str = "STRATA_LISTEN_ROLES";

/// Receives `n` descriptors sent with [`send`].
fn receive(from: &OwnedFd, n: usize) -> Result<Vec<OwnedFd>> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut space = vec![std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(n.max(1)))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    recvmsg(from, &mut [std::io::IoSliceMut::new(&mut byte)], &mut control, RecvFlags::CMSG_CLOEXEC)
        .map_err(|e| Error::internal("receiving the listening sockets", e))?;
    let mut out = Vec::new();
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = msg {
            out.extend(fds);
        }
    }
    if out.len() != n {
        return Err(Error::new(ErrorKind::Config, format!("received {} of {n} listening sockets", out.len())));
    }
    Ok(out)
}

/// Sends `fds` over `to` (one byte of payload carries them).
fn send(to: &OwnedFd, fds: &[std::os::fd::BorrowedFd<'_>]) -> Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
    let mut space = vec![std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len().max(1)))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(fds));
    sendmsg(to, &[std::io::IoSlice::new(&[1])], &mut control, SendFlags::empty())
        .map_err(|e| Error::internal("passing the listening sockets", e))?;
    Ok(())
}

/// Starts this binary again (the file now at the path it was started from) with the same
/// arguments, and hands it `listeners` (role, socket) over a Unix socket on its stdin.
/// Returns the successor's pid. The successor takes over on its own (the module's order).
pub fn spawn_successor(listeners: &[(String, OwnedFd)]) -> Result<u32> {
    let exe = std::env::args_os().next().map(PathBuf::from).unwrap_or_default();
    let exe = if exe.components().count() > 1 { exe } else { std::env::current_exe()? };
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let roles: Vec<&str> = listeners.iter().map(|(r, _)| r.as_str()).collect();
    let child = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .env(ROLES_ENV, roles.join(","))
        .env(FROM_ENV, std::process::id().to_string())
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(std::process::Stdio::from(OwnedFd::from(theirs)))
        .spawn()
        .map_err(|e| Error::internal(format!("starting {}", exe.display()), e))?;
    let fds: Vec<_> = listeners.iter().map(|(_, fd)| fd.as_fd()).collect();
    send(&OwnedFd::from(ours), &fds)?;
    tracing::info!(pid = child.id(), binary = %exe.display(), "started a successor; it takes over once it is ready");
    Ok(child.id())
}

/// Whether this process was started by [`spawn_successor`] to replace another.
pub fn is_successor() -> bool {
    std::env::var_os(FROM_ENV).is_some()
}

/// For a successor: the pid of the process it replaces, once told to stop (SIGTERM).
/// Called after this process has checked its config and reached its catalog, so that a
/// successor that cannot start leaves the old process serving.
pub fn relieve_predecessor() -> Result<Option<u32>> {
    let Some(pid) = std::env::var(FROM_ENV).ok().and_then(|p| p.parse::<i32>().ok()) else { return Ok(None) };
    let Some(p) = rustix::process::Pid::from_raw(pid) else { return Ok(None) };
    notify(false);
    match rustix::process::kill_process(p, rustix::process::Signal::TERM) {
        Ok(()) => tracing::info!(pid, "asked the previous process to hand over"),
        // Gone already: its lock is free.
        Err(e) if e == rustix::io::Errno::SRCH => {}
        Err(e) => return Err(Error::internal("signalling the previous process", e)),
    }
    Ok(u32::try_from(pid).ok())
}

/// Tells systemd (`Type=notify`, `NotifyAccess=all`) that this process is the service's
/// main process and, with `ready`, that it serves. A successor says the first before it
/// asks its predecessor to stop, so that the old process's exit is not the service's.
/// Nothing without `NOTIFY_SOCKET`.
pub fn notify(ready: bool) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let msg = format!("MAINPID={}\n{}", std::process::id(), if ready { "READY=1\n" } else { "" });
    let sent = std::os::unix::net::UnixDatagram::unbound().and_then(|sock| {
        let bytes = path.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                sock.send_to_addr(msg.as_bytes(), &addr)
            }
            None => sock.send_to(msg.as_bytes(), &path),
        }
    });
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
