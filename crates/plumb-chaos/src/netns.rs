//! Network namespaces plumb creates for a scenario (`[[netns]]`, root
//! only), and the network faults done inside them.
//!
//! The layout: one hub namespace holding a bridge, and one namespace per
//! `[[netns]]`, joined to the bridge by a veth pair whose inner end is
//! `eth0` with the namespace's address. Started targets and probes may run
//! in one of them (`netns = "NAME"`); the host's own network is never
//! touched. Faults are rules inside one namespace, so they end with it:
//! `partition` (nftables drops everything between it and every other
//! namespace, both ways), `loss` (nftables drops each packet in or out of
//! `eth0` with a probability, `numgen random`), `bandwidth` (a tbf qdisc on
//! `eth0`), `delay` (tc netem, where the kernel has `sch_netem`). Every
//! namespace is journaled before it is made ([`Undo::DeleteNetns`]), so a
//! plumb killed mid-scenario leaves none behind after its next start.
//!
//! It drives `ip`, `tc` (iproute2) and `nft` (nftables), each named with
//! its Debian package when missing.

use crate::journal::{Journal, Undo, Written};
use anyhow::{Context, Result, bail};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where `ip netns` keeps its namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Every namespace plumb makes starts with this.
pub const PREFIX: &str = "plumb-";

/// The nftables table a fault adds (one per kind, deleted on removal).
fn table(kind: &str) -> String {
    format!("plumb_{kind}")
}

/// Loads, inside namespace `ns`, the table of fault `kind`: one rule on
/// what comes in, one on what goes out.
fn add_rules(ns: &str, kind: &str, input: &str, output: &str) -> Result<()> {
    let t = table(kind);
    let script = format!(
        "table inet {t} {{\n\
         chain input {{ type filter hook input priority 0; policy accept; {input}; }}\n\
         chain output {{ type filter hook output priority 0; policy accept; {output}; }}\n\
         }}\n"
    );
    run(
        "ip",
        &["netns", "exec", ns, "nft", "-f", "-"],
        Some(&script),
    )
}

/// One `[[netns]]` of a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Its name in the scenario.
    pub name: String,
    /// Its address on the bridge.
    pub address: Ipv4Addr,
    /// The prefix length of that network.
    pub prefix: u8,
    /// Its line in the scenario.
    pub line: usize,
}

/// The namespaces of one scenario run, made and joined.
#[derive(Debug)]
pub struct Net {
    hub: String,
    groups: Vec<(Spec, String)>,
    /// Every namespace made, with its journal entry, in the order made.
    entries: Vec<(String, Written)>,
}

/// Runs a program, failing with its stderr and what to install.
fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<()> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        let package = if program == "nft" {
            "nftables"
        } else {
            "iproute2"
        };
        anyhow::anyhow!("cannot run {program} ({e}): install the Debian package {package}")
    })?;
    if let Some(text) = input {
        use std::io::Write;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `ip -n NS ...`.
fn ip_in(ns: &str, args: &[&str]) -> Result<()> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run("ip", &all, None)
}

/// The namespace's file, for `setns`.
pub fn path_of(ns: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(ns)
}

/// Deletes a namespace plumb made (its interfaces, rules and qdiscs go
/// with it); one already gone is fine.
pub fn delete(ns: &str) -> Result<()> {
    if !ns.starts_with(PREFIX) {
        bail!("{ns} is not one of plumb's namespaces");
    }
    if !path_of(ns).exists() {
        return Ok(());
    }
    run("ip", &["netns", "delete", ns], None)
}

/// Moves the calling thread into the namespace at `path` (a thread of its
/// own: a probe's, or the child between fork and exec).
pub fn enter(path: &Path) -> std::io::Result<()> {
    let f = std::fs::File::open(path)?;
    // SAFETY: setns on a namespace file descriptor we hold open.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a thread of its own inside the namespace at `path`, so the
/// caller's own thread stays where it is.
pub fn within<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(path).with_context(|| format!("cannot enter {}", path.display()))?;
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("a thread inside {} panicked", path.display()))?
    })
}

/// Whether this kernel has tc netem (`sch_netem`): tried in a namespace of
/// its own, deleted at once.
pub fn netem_available() -> bool {
    let ns = format!("{PREFIX}netem-check-{}", std::process::id());
    if run("ip", &["netns", "add", &ns], None).is_err() {
        return false;
    }
    let ok = ip_in(&ns, &["link", "set", "lo", "up"]).is_ok()
        && run(
            "tc",
            &[
                "-n", &ns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
            ],
            None,
        )
        .is_ok();
    let _ = delete(&ns);
    ok
}

/// Checks, before anything runs, that namespaces can be made here.
pub fn check() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN): run plumb chaos as root, or use a [[link]] through plumb's proxy"
        );
    }
    for (program, package) in [("ip", "iproute2"), ("tc", "iproute2"), ("nft", "nftables")] {
        let found = Command::new(program)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            bail!("{program} is not installed (Debian: apt install {package})");
        }
    }
    Ok(())
}

impl Net {
    /// Makes the hub and one namespace per spec, each journaled first.
    /// `run` names them (`plumb-<run>-<name>`), so two scenarios at once
    /// never share one.
    pub fn create(run_id: &str, specs: &[Spec], journal: &Journal) -> Result<Net> {
        // The id's end: its start is a timestamp, the same for two runs
        // started together.
        let id: Vec<char> = run_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let short: String = id[id.len().saturating_sub(10)..].iter().collect();
        let mut net = Net {
            hub: format!("{PREFIX}{short}-hub"),
            groups: Vec::new(),
            entries: Vec::new(),
        };
        let made = (|| -> Result<()> {
            net.add_ns(&net.hub.clone(), journal)?;
            ip_in(&net.hub, &["link", "add", "br0", "type", "bridge"])?;
            ip_in(&net.hub, &["link", "set", "br0", "up"])?;
            for (i, spec) in specs.iter().enumerate() {
                let ns = format!("{PREFIX}{short}-{}", spec.name);
                net.add_ns(&ns, journal)?;
                let port = format!("p{i}");
                ip_in(
                    &net.hub,
                    &[
                        "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                    ],
                )?;
                ip_in(&net.hub, &["link", "set", &port, "master", "br0", "up"])?;
                let cidr = format!("{}/{}", spec.address, spec.prefix);
                ip_in(&ns, &["addr", "add", &cidr, "dev", "eth0"])?;
                ip_in(&ns, &["link", "set", "eth0", "up"])?;
                ip_in(&ns, &["link", "set", "lo", "up"])?;
                net.groups.push((spec.clone(), ns));
            }
            Ok(())
        })();
        if let Err(e) = made {
            net.destroy(journal);
            return Err(e.context("cannot make the scenario's network namespaces"));
        }
        Ok(net)
    }

    fn add_ns(&mut self, ns: &str, journal: &Journal) -> Result<()> {
        let entry = journal.write(
            &format!("network namespace {ns}"),
            &Undo::DeleteNetns { name: ns.into() },
        )?;
        if let Err(e) = run("ip", &["netns", "add", ns], None) {
            journal.done(entry);
            return Err(e);
        }
        self.entries.push((ns.to_string(), entry));
        Ok(())
    }

    /// The namespace of `[[netns]]` `name`.
    pub fn ns(&self, name: &str) -> Result<&str> {
        self.groups
            .iter()
            .find(|(s, _)| s.name == name)
            .map(|(_, ns)| ns.as_str())
            .with_context(|| format!("no network namespace `{name}`"))
    }

    /// Its file, for `setns`.
    pub fn path(&self, name: &str) -> Result<PathBuf> {
        Ok(path_of(self.ns(name)?))
    }

    /// Every namespace's name, the hub's last.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.groups.iter().map(|(_, ns)| ns.clone()).collect();
        v.push(self.hub.clone());
        v
    }

    /// Cuts `name` off from the namespaces in `from` (every other one when
    /// empty), both ways; the rest still reach it.
    pub fn partition(&self, name: &str, from: &[String]) -> Result<String> {
        let ns = self.ns(name)?;
        let cut: Vec<&Spec> = self
            .groups
            .iter()
            .map(|(s, _)| s)
            .filter(|s| s.name != name && (from.is_empty() || from.contains(&s.name)))
            .collect();
        let others: Vec<String> = cut.iter().map(|s| s.address.to_string()).collect();
        let named: Vec<String> = cut
            .iter()
            .map(|s| format!("`{}` ({})", s.name, s.address))
            .collect();
        if others.is_empty() {
            bail!("`{name}` is the only network namespace: nothing to cut it off from");
        }
        let set = others.join(", ");
        add_rules(
            ns,
            "partition",
            &format!("ip saddr {{ {set} }} drop"),
            &format!("ip daddr {{ {set} }} drop"),
        )?;
        Ok(format!("`{name}` cut off from {}", named.join(", ")))
    }

    /// Drops `percent` of the packets in and out of `name`'s `eth0`.
    pub fn loss(&self, name: &str, percent: f64) -> Result<String> {
        let ns = self.ns(name)?;
        // numgen counts in ten-thousandths, for fractions of a percent.
        let below = (percent * 100.0).round() as u32;
        add_rules(
            ns,
            "loss",
            &format!("iifname \"eth0\" numgen random mod 10000 < {below} drop"),
            &format!("oifname \"eth0\" numgen random mod 10000 < {below} drop"),
        )?;
        Ok(format!(
            "{percent}% of packets in and out of `{name}` dropped"
        ))
    }

    /// Removes what [`partition`](Self::partition) or [`loss`](Self::loss)
    /// added.
    pub fn remove_rules(&self, name: &str, kind: &str) -> Result<()> {
        let ns = self.ns(name)?;
        let t = table(kind);
        run(
            "ip",
            &["netns", "exec", ns, "nft", "delete", "table", "inet", &t],
            None,
        )
    }

    /// Limits what `name` sends to `rate` (tc's units: `1mbit`, `500kbit`).
    pub fn bandwidth(&self, name: &str, rate: &str) -> Result<String> {
        let ns = self.ns(name)?;
        run(
            "tc",
            &[
                "-n", ns, "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", rate, "burst",
                "32kbit", "latency", "400ms",
            ],
            None,
        )?;
        Ok(format!("`{name}` sends at most {rate}"))
    }

    /// Delays what `name` sends by `ms` milliseconds (tc netem).
    pub fn delay(&self, name: &str, ms: u128) -> Result<String> {
        let ns = self.ns(name)?;
        let d = format!("{ms}ms");
        run(
            "tc",
            &[
                "-n", ns, "qdisc", "add", "dev", "eth0", "root", "netem", "delay", &d,
            ],
            None,
        )?;
        Ok(format!("`{name}` sends {d} later"))
    }

    /// Removes `name`'s qdisc (bandwidth or delay).
    pub fn remove_qdisc(&self, name: &str) -> Result<()> {
        let ns = self.ns(name)?;
        run(
            "tc",
            &["-n", ns, "qdisc", "del", "dev", "eth0", "root"],
            None,
        )
    }

    /// Deletes every namespace (so their veths, rules and qdiscs), each
    /// journal entry going once its namespace is gone. A failure is logged
    /// and its entry kept, for the next start to try again.
    pub fn destroy(&mut self, journal: &Journal) {
        self.groups.clear();
        for (ns, entry) in self.entries.drain(..).rev() {
            match delete(&ns) {
                Ok(()) => journal.done(entry),
                Err(e) => tracing::warn!(error = %e, "cannot delete network namespace {ns}"),
            }
        }
    }
}
