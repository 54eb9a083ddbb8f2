//! The machine: operating system, kernel, CPU, memory and C library.

use plumb_model::OsInfo;
use std::ffi::CStr;
use std::io::{BufRead, BufReader};

/// `/etc/os-release` plus `uname`.
pub(crate) fn os_info() -> OsInfo {
    let mut info = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .map(|t| parse_os_release(&t))
        .unwrap_or_default();
    // SAFETY: `uname` fills the zeroed struct it is given; its fields are
    // NUL-terminated C strings on success.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) == 0 {
            info.kernel = CStr::from_ptr(u.release.as_ptr())
                .to_string_lossy()
                .into_owned();
            info.arch = CStr::from_ptr(u.machine.as_ptr())
                .to_string_lossy()
                .into_owned();
        }
    }
    info
}

/// `ID`, `VERSION_ID` and `PRETTY_NAME` of an os-release file.
pub(crate) fn parse_os_release(text: &str) -> OsInfo {
    let mut info = OsInfo::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
        match k.trim() {
            "ID" => info.id = v,
            "VERSION_ID" => info.version = v,
            "PRETTY_NAME" => info.pretty = v,
            _ => {}
        }
    }
    info
}

/// The CPU model name from `/proc/cpuinfo`, reading only as far as needed.
pub(crate) fn cpu_model() -> String {
    let Ok(f) = std::fs::File::open("/proc/cpuinfo") else {
        return String::new();
    };
    for line in BufReader::new(f).lines().map_while(Result::ok) {
        if let Some((k, v)) = line.split_once(':') {
            // x86 says `model name`; some ARM kernels `Hardware` or
            // `Processor`, MIPS `cpu model`.
            if matches!(
                k.trim(),
                "model name" | "Hardware" | "Processor" | "cpu model"
            ) {
                return v.trim().to_string();
            }
        }
    }
    String::new()
}

/// Logical CPUs online.
pub(crate) fn cpu_count() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(n).unwrap_or(0)
}

/// Total memory in bytes.
pub(crate) fn memory_bytes() -> u64 {
    // SAFETY: sysinfo fills the zeroed struct it is given.
    unsafe {
        let mut s: libc::sysinfo = std::mem::zeroed();
        if libc::sysinfo(&mut s) == 0 {
            return (s.totalram as u64).saturating_mul(u64::from(s.mem_unit));
        }
    }
    0
}

/// The C library plumb itself runs on (`glibc 2.36`); the child shares it
/// unless it is static or brings its own, in which case its mapped
/// libraries tell.
pub(crate) fn libc_version() -> String {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: gnu_get_libc_version returns a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(libc::gnu_get_libc_version()) };
        format!("glibc {}", v.to_string_lossy())
    }
    #[cfg(all(target_os = "linux", target_env = "musl"))]
    {
        "musl".to_string()
    }
    #[cfg(not(all(target_os = "linux", any(target_env = "gnu", target_env = "musl"))))]
    {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_is_parsed() {
        let info = parse_os_release(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
        );
        assert_eq!(info.id, "debian");
        assert_eq!(info.version, "12");
        assert_eq!(info.pretty, "Debian GNU/Linux 12 (bookworm)");
    }

    #[test]
    fn this_machine_is_described() {
        let os = os_info();
        assert!(!os.kernel.is_empty() && !os.arch.is_empty());
        assert!(cpu_count() >= 1);
        assert!(memory_bytes() > 16 << 20);
        assert!(libc_version().starts_with("glibc 2."), "{}", libc_version());
    }
}
