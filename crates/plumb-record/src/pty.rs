//! Pseudo-terminals for the child's stdout and stderr when the recorder's own
//! are terminals, so that the child's colours and progress bars behave.
//!
//! The child is not made a session leader and the pty is not its controlling
//! terminal: it stays in the recorder's process group and session, so job
//! control and reads from the real terminal keep working. The pty only
//! carries output.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A pty pair: the recorder reads the master, the child writes the slave.
#[derive(Debug)]
pub(crate) struct Pty {
    /// Read by the recorder.
    pub master: OwnedFd,
    /// Given to the child as its fd 1 or 2.
    pub slave: OwnedFd,
}

/// Opens a pty whose window size is that of the terminal `size_from`, with
/// output post-processing (`OPOST`) off so that the child's bytes arrive
/// unchanged (no `\n` to `\r\n`): the real terminal does its own processing
/// when the recorder writes them there.
pub(crate) fn open(size_from: RawFd) -> io::Result<Pty> {
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into `size`.
    let have_size = unsafe { libc::ioctl(size_from, libc::TIOCGWINSZ, &mut size) } == 0;
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty fills both descriptors; the window size pointer is
    // valid or null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            if have_size { &size } else { std::ptr::null() },
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openpty returned two fresh descriptors that nobody else owns.
    let pty = unsafe {
        Pty {
            master: OwnedFd::from_raw_fd(master),
            slave: OwnedFd::from_raw_fd(slave),
        }
    };
    // openpty cannot set close-on-exec; without it the child would inherit
    // the master and never see its own output end.
    for fd in [pty.master.as_raw_fd(), pty.slave.as_raw_fd()] {
        // SAFETY: plain fcntl on descriptors we own.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    let mut attrs: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: attrs is valid for both calls.
    if unsafe { libc::tcgetattr(pty.slave.as_raw_fd(), &mut attrs) } != 0 {
        return Err(io::Error::last_os_error());
    }
    attrs.c_oflag &= !libc::OPOST;
    if unsafe { libc::tcsetattr(pty.slave.as_raw_fd(), libc::TCSANOW, &attrs) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pty)
}

/// Copies the window size of terminal `from` to pty master `to` (after a
/// SIGWINCH). Failures are ignored: a stale size is all that can result.
pub(crate) fn copy_window_size(from: RawFd, to: RawFd) {
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: both ioctls read or write one winsize.
    unsafe {
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut size) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &size);
        }
    }
}
