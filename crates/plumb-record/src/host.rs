//! Host and user identity, and what kind of stdin the child has.
//!
//! Everything here is a handful of system calls (no subprocesses), because it
//! runs once per recorded run.

use plumb_model::{HostInfo, UserInfo};
use std::ffi::{CStr, CString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of file descriptor 0 is, as recorded in `Run::stdin`:
/// `tty`, `pipe`, `file`, `null` (`/dev/null`), `socket`, `closed` or `other`.
pub fn stdin_kind() -> &'static str {
    fd_kind(0)
}

/// What kind of file `fd` is; see [`stdin_kind`].
pub fn fd_kind(fd: libc::c_int) -> &'static str {
    // SAFETY: fstat only writes into the struct we hand it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return "closed";
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO => "pipe",
        libc::S_IFREG => "file",
        libc::S_IFSOCK => "socket",
        libc::S_IFCHR => {
            // SAFETY: isatty has no memory effects.
            if unsafe { libc::isatty(fd) } == 1 {
                "tty"
            } else if is_dev_null(&st) {
                "null"
            } else {
                "other"
            }
        }
        _ => "other",
    }
}

fn is_dev_null(st: &libc::stat) -> bool {
    // Compare with /dev/null itself rather than hard-coding its device
    // numbers (1, 3), which differ on some systems.
    let mut null: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: the path is a NUL-terminated literal; stat writes into `null`.
    let ok = unsafe { libc::stat(c"/dev/null".as_ptr(), &mut null) } == 0;
    ok && null.st_rdev == st.st_rdev
}

/// The host's name, fully qualified name and non-loopback addresses.
pub fn host_info() -> HostInfo {
    let hostname = hostname();
    let fqdn = fqdn(&hostname).unwrap_or_else(|| hostname.clone());
    HostInfo {
        hostname,
        fqdn,
        ips: non_loopback_ips(),
    }
}

/// A fully qualified name being resolved in the background.
///
/// Resolving may query DNS, which on a misconfigured node blocks for
/// seconds; the recorder must not make a short job that much longer, so it
/// waits only a bounded time and falls back to the host name.
#[derive(Debug)]
pub struct FqdnLookup {
    hostname: String,
    result: Option<std::sync::mpsc::Receiver<Option<String>>>,
    resolved: Option<String>,
}

impl FqdnLookup {
    /// Starts resolving `hostname` on its own thread.
    pub fn start(hostname: String) -> FqdnLookup {
        let (tx, rx) = std::sync::mpsc::channel();
        let name = hostname.clone();
        let spawned = std::thread::Builder::new()
            .name("plumb-fqdn".into())
            .spawn(move || {
                let _ = tx.send(fqdn(&name));
            });
        FqdnLookup {
            hostname,
            result: spawned.ok().map(|_| rx),
            resolved: None,
        }
    }

    /// The name, waiting at most `budget` for the lookup; the host name when
    /// it does not resolve or has not resolved yet.
    pub fn get(&mut self, budget: std::time::Duration) -> String {
        if self.resolved.is_none()
            && let Some(rx) = &self.result
        {
            match rx.recv_timeout(budget) {
                Ok(name) => {
                    self.resolved = Some(name.unwrap_or_else(|| self.hostname.clone()));
                    self.result = None;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => self.result = None,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        self.resolved
            .clone()
            .unwrap_or_else(|| self.hostname.clone())
    }
}

/// `gethostname(2)`, lossily decoded; empty when it fails.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The canonical name of `hostname` from `getaddrinfo(AI_CANONNAME)`, which
/// consults /etc/hosts and DNS as the system is configured to.
fn fqdn(hostname: &str) -> Option<String> {
    if hostname.is_empty() {
        return None;
    }
    let node = CString::new(hostname).ok()?;
    // SAFETY: zeroed addrinfo is a valid "no hints" value; we then set fields.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_flags = libc::AI_CANONNAME;
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: node and hints outlive the call; res is freed below.
    let rc = unsafe { libc::getaddrinfo(node.as_ptr(), std::ptr::null(), &hints, &mut res) };
    if rc != 0 || res.is_null() {
        return None;
    }
    // SAFETY: res is a valid list returned by getaddrinfo; ai_canonname is
    // set on the first entry when AI_CANONNAME was asked for.
    let name = unsafe {
        let canon = (*res).ai_canonname;
        let name = if canon.is_null() {
            None
        } else {
            Some(CStr::from_ptr(canon).to_string_lossy().into_owned())
        };
        libc::freeaddrinfo(res);
        name
    };
    name.filter(|n| !n.is_empty())
}

/// Every IPv4 and IPv6 address of every interface except loopback ones,
/// deduplicated, in interface order.
pub fn non_loopback_ips() -> Vec<String> {
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list that we free with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return Vec::new();
    }
    let mut ips: Vec<String> = Vec::new();
    let mut cur = ifap;
    while !cur.is_null() {
        // SAFETY: cur walks the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_flags & libc::IFF_LOOPBACK as libc::c_uint != 0 || ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points at a sockaddr whose family
        // tells which concrete type it is.
        let ip = unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
                }
                _ => continue,
            }
        };
        if ip.is_loopback() {
            continue;
        }
        let text = ip.to_string();
        if !ips.contains(&text) {
            ips.push(text);
        }
    }
    // SAFETY: ifap came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(ifap) };
    ips
}

/// The real uid and gid, supplementary groups, and the login name of the uid
/// (empty when the uid has no passwd entry, as in many containers).
pub fn user_info() -> UserInfo {
    // SAFETY: these calls have no preconditions.
    let uid = unsafe { libc::getuid() };
    let gid = unsafe { libc::getgid() };
    UserInfo {
        name: user_name(uid).unwrap_or_default(),
        uid,
        gid,
        groups: groups(),
    }
}

fn user_name(uid: libc::uid_t) -> Option<String> {
    let mut buf = vec![0u8; 1024];
    // Bounded: a passwd entry larger than 1 MiB is not a name worth having.
    while buf.len() <= 1 << 20 {
        // SAFETY: pwd and buf are valid for the call; result points into them.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE {
            let bigger = buf.len() * 4;
            buf.resize(bigger, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        // SAFETY: pw_name points into buf, NUL-terminated.
        return Some(
            unsafe { CStr::from_ptr(pwd.pw_name) }
                .to_string_lossy()
                .into_owned(),
        );
    }
    None
}

fn groups() -> Vec<u32> {
    // SAFETY: a zero-size query returns the count only.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n <= 0 {
        return Vec::new();
    }
    let mut list = vec![0 as libc::gid_t; n as usize];
    // SAFETY: list has room for n entries.
    let got = unsafe { libc::getgroups(n, list.as_mut_ptr()) };
    if got < 0 {
        return Vec::new();
    }
    list.truncate(got as usize);
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_has_a_name_and_no_loopback_addresses() {
        let host = host_info();
        assert!(!host.hostname.is_empty());
        assert!(!host.fqdn.is_empty());
        for ip in &host.ips {
            let parsed: IpAddr = ip.parse().expect("an IP address");
            assert!(!parsed.is_loopback(), "{ip} is loopback");
        }
    }

    #[test]
    fn background_lookup_agrees_with_the_direct_one() {
        let host = host_info();
        let mut lookup = FqdnLookup::start(host.hostname.clone());
        assert_eq!(lookup.get(std::time::Duration::from_secs(10)), host.fqdn);
        // Asking again returns the same answer without waiting.
        assert_eq!(lookup.get(std::time::Duration::ZERO), host.fqdn);
    }

    #[test]
    fn user_matches_the_process_ids() {
        let user = user_info();
        assert_eq!(user.uid, unsafe { libc::getuid() });
        assert_eq!(user.gid, unsafe { libc::getgid() });
    }

    #[test]
    fn fd_kinds_are_told_apart() {
        use std::os::fd::AsRawFd;
        let file = tempfile::tempfile().unwrap();
        assert_eq!(fd_kind(file.as_raw_fd()), "file");
        let null = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(fd_kind(null.as_raw_fd()), "null");
        let (r, _w) = std::io::pipe().unwrap();
        assert_eq!(fd_kind(r.as_raw_fd()), "pipe");
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(fd_kind(a.as_raw_fd()), "socket");
        assert_eq!(fd_kind(9999), "closed");
    }
}
