//! Pseudo-terminals: open a pair, make the slave raw, link `DIR/<name>` to it, and
//! non-blocking reads and writes on the master with bounded waits.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::openpty;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};

use crate::EmulatorError;

/// How long one wait for a pseudo-terminal lasts before the stop flag is checked, ms.
pub(crate) const POLL_MS: u8 = 50;

/// One node's port: the master the emulator reads and writes, the slave it keeps open
/// (so the master never sees a hang-up when the node closes and reopens the port), and
/// the symlink.
#[derive(Debug)]
pub(crate) struct Port {
    pub(crate) master: File,
    pub(crate) slave: File,
    pub(crate) slave_path: PathBuf,
    pub(crate) link: PathBuf,
}

fn pty_err(what: &'static str) -> impl FnOnce(nix::Error) -> EmulatorError {
    move |e| EmulatorError::Pty { what, source: e }
}

/// Sets the terminal behind `fd` to raw mode (no echo, no line editing, 8 bits).
pub fn set_raw(fd: impl AsFd) -> Result<(), EmulatorError> {
    let mut t = tcgetattr(fd.as_fd()).map_err(pty_err("tcgetattr"))?;
    cfmakeraw(&mut t);
    tcsetattr(fd.as_fd(), SetArg::TCSANOW, &t).map_err(pty_err("tcsetattr"))
}

fn set_nonblocking(fd: &OwnedFd) -> Result<(), EmulatorError> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(pty_err("fcntl"))?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(pty_err("fcntl"))?;
    Ok(())
}

/// Opens a pseudo-terminal for `name` and links `dir/name` to its slave.
pub(crate) fn open(dir: &Path, name: &str) -> Result<Port, EmulatorError> {
    let pair = openpty(None, None).map_err(pty_err("openpty"))?;
    set_raw(&pair.slave)?;
    set_nonblocking(&pair.master)?;
    let slave_path = nix::unistd::ttyname(&pair.slave).map_err(pty_err("ttyname"))?;
    let link = dir.join(name);
    replace_link(&slave_path, &link)?;
    Ok(Port {
        master: File::from(pair.master),
        slave: File::from(pair.slave),
        slave_path,
        link,
    })
}

/// Points `link` at `target`, replacing a stale symlink but nothing else.
fn replace_link(target: &Path, link: &Path) -> Result<(), EmulatorError> {
    let io_err = |source| EmulatorError::Io {
        path: link.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(link) {
        Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(link).map_err(io_err)?,
        Ok(_) => {
            return Err(io_err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a symlink",
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    std::os::unix::fs::symlink(target, link).map_err(io_err)
}

/// Removes `link` if it is still a symlink to `target`.
pub(crate) fn remove_link(link: &Path, target: &Path) {
    if std::fs::read_link(link).is_ok_and(|t| t == target) {
        if let Err(e) = std::fs::remove_file(link) {
            tracing::debug!(link = %link.display(), error = %e, "could not remove symlink");
        }
    }
}

/// Waits up to [`POLL_MS`] for `file` to be readable (`out == false`) or writable.
fn wait(file: &File, out: bool) {
    let flags = if out {
        PollFlags::POLLOUT
    } else {
        PollFlags::POLLIN
    };
    let mut fds = [PollFd::new(file.as_fd(), flags)];
    // An error or timeout just means "try again"; the callers check their stop flag.
    let _ = poll(&mut fds, PollTimeout::from(POLL_MS));
}

/// Reads what is available, waiting at most [`POLL_MS`]: `Ok(0)` means nothing yet.
pub(crate) fn read_some(mut file: &File, buf: &mut [u8]) -> io::Result<usize> {
    match file.read(buf) {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            wait(file, false);
            match file.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                r => r,
            }
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

/// Writes all of `bytes`, waiting for room as long as `stop` is not set. Returns
/// whether everything was written.
pub(crate) fn write_all(mut file: &File, bytes: &[u8], stop: &AtomicBool) -> bool {
    let mut done = 0;
    while done < bytes.len() {
        match file.write(&bytes[done..]) {
            Ok(0) => return false,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                wait(file, true);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!(error = %e, "pseudo-terminal write failed");
                return false;
            }
        }
    }
    true
}
