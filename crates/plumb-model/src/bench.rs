//! Node benchmarks: what `plumb bench-node` (and an idle agent) measured on
//! one node, the figures that rank nodes (`plumb nodes --rank`), and the
//! pure comparison of a new result against the node's own history (the
//! `node_bench_drop` alert).
//!
//! Every figure is the median of several short repetitions and carries its
//! spread, (max - min) / median in percent, so a reader can tell a steady
//! number from a noisy one.

use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// The schema version of a [`NodeBench`].
pub const BENCH_VERSION: u32 = 1;

/// One measured figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// The median of the repetitions.
    pub value: f64,
    /// (max - min) / median of the repetitions, in percent.
    pub spread_pct: f64,
    /// How many repetitions were taken.
    pub reps: u32,
}

impl Figure {
    /// The median and spread of `samples` (at least one, each finite).
    pub fn of(samples: &[f64]) -> Figure {
        let mut s: Vec<f64> = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n == 0 {
            0.0
        } else if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        let spread_pct = if n == 0 || median <= 0.0 {
            0.0
        } else {
            (s[n - 1] - s[0]) / median * 100.0
        };
        Figure {
            value: median,
            spread_pct,
            reps: n as u32,
        }
    }

    /// Whether the value is a usable measurement (positive and finite).
    pub fn is_valid(&self) -> bool {
        self.value.is_finite() && self.value > 0.0 && self.spread_pct.is_finite()
    }
}

/// Sequential and random disk I/O at one path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskBench {
    /// The directory the test file was written in.
    pub path: String,
    /// Sequential write, fsync included, MB/s.
    pub seq_write_mbs: Figure,
    /// Sequential read, around the page cache, MB/s.
    pub seq_read_mbs: Figure,
    /// 4 KiB reads at random offsets, per second.
    pub rand_read_iops: Figure,
    /// Whether the file's page cache could be dropped before each read
    /// (`posix_fadvise(DONTNEED)`); when not, the reads may have come from
    /// memory and `note` says why.
    pub cache_dropped: bool,
    /// Whether the reads bypassed the page cache (O_DIRECT); results of
    /// agents before this field read `false`.
    #[serde(default)]
    pub direct_io: bool,
    /// What a reader should know about these figures, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Round-trip time and throughput to the collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetBench {
    /// The collector's URL.
    pub collector: String,
    /// A small request's round trip, milliseconds (lower is better).
    pub rtt_ms: Figure,
    /// Upload throughput of a large request body, MB/s.
    pub upload_mbs: Figure,
}

/// One node's benchmark result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeBench {
    /// Schema version ([`BENCH_VERSION`]).
    pub version: u32,
    /// The node it ran on.
    pub node: String,
    /// When it started (the node's clock).
    pub taken_at: Timestamp,
    /// How long the whole benchmark took, seconds.
    pub wall_s: f64,
    /// Whether it was the short `--quick` variant (less trustworthy).
    #[serde(default)]
    pub quick: bool,
    /// Online CPUs (one thread each for the all-core figures).
    pub cpus: u32,
    /// One core, integer operations, millions per second.
    pub cpu_int_mops: Figure,
    /// One core, floating-point operations, millions per second.
    pub cpu_float_mflops: Figure,
    /// Every online CPU, integer operations, millions per second.
    pub cpu_all_int_mops: Figure,
    /// Every online CPU, floating-point operations, millions per second.
    pub cpu_all_float_mflops: Figure,
    /// Memory bandwidth of a STREAM-triad-like kernel (`a[i] = b[i] + s *
    /// c[i]`, 24 bytes an element) on arrays well past the last-level
    /// cache, one core, MB/s.
    pub mem_triad_mbs: Figure,
    /// The triad's three arrays together, bytes.
    pub mem_bytes: u64,
    /// Disk I/O, when a path was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskBench>,
    /// Network to the collector, when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<NetBench>,
}

/// One figure of a result, by name, for tables and comparisons.
#[derive(Debug, Clone, PartialEq)]
pub struct Named<'a> {
    /// Its stable name (`cpu_int`, `mem_triad`, ...).
    pub name: &'static str,
    /// What it measures, in words.
    pub label: &'static str,
    /// Its unit.
    pub unit: &'static str,
    /// Whether a larger value is better (false for latency).
    pub higher_is_better: bool,
    /// The figure.
    pub figure: &'a Figure,
}

/// The keys `plumb nodes --rank` accepts.
pub const RANK_KEYS: &[&str] = &["cpu", "mem", "disk", "net"];

impl NodeBench {
    /// Every figure, in the order they are printed.
    pub fn figures(&self) -> Vec<Named<'_>> {
        let n = |name, label, unit, figure| Named {
            name,
            label,
            unit,
            higher_is_better: true,
            figure,
        };
        let mut v = vec![
            n(
                "cpu_int",
                "CPU one core, integer",
                "Mops/s",
                &self.cpu_int_mops,
            ),
            n(
                "cpu_float",
                "CPU one core, floating point",
                "Mflop/s",
                &self.cpu_float_mflops,
            ),
            n(
                "cpu_all_int",
                "CPU all cores, integer",
                "Mops/s",
                &self.cpu_all_int_mops,
            ),
            n(
                "cpu_all_float",
                "CPU all cores, floating point",
                "Mflop/s",
                &self.cpu_all_float_mflops,
            ),
            n(
                "mem_triad",
                "Memory bandwidth (triad)",
                "MB/s",
                &self.mem_triad_mbs,
            ),
        ];
        if let Some(d) = &self.disk {
            v.push(n(
                "disk_seq_write",
                "Disk sequential write",
                "MB/s",
                &d.seq_write_mbs,
            ));
            v.push(n(
                "disk_seq_read",
                "Disk sequential read",
                "MB/s",
                &d.seq_read_mbs,
            ));
            v.push(n(
                "disk_rand_read",
                "Disk 4 KiB random read",
                "IOPS",
                &d.rand_read_iops,
            ));
        }
        if let Some(net) = &self.net {
            v.push(Named {
                higher_is_better: false,
                ..n("net_rtt", "Round trip to the collector", "ms", &net.rtt_ms)
            });
            v.push(n(
                "net_upload",
                "Upload to the collector",
                "MB/s",
                &net.upload_mbs,
            ));
        }
        v
    }

    /// The score a rank key orders by (larger is better), or `None` when
    /// this result has no such figure (no disk or network measured).
    ///
    /// `cpu`: the geometric mean of the four CPU figures; `mem`: the triad;
    /// `disk`: the geometric mean of sequential write, read and random
    /// IOPS; `net`: upload throughput divided by the round trip.
    pub fn score(&self, key: &str) -> Option<f64> {
        let geo = |xs: &[f64]| {
            let n = xs.len() as f64;
            xs.iter().map(|x| x.max(1e-9).ln()).sum::<f64>() / n
        };
        match key {
            "cpu" => Some(
                geo(&[
                    self.cpu_int_mops.value,
                    self.cpu_float_mflops.value,
                    self.cpu_all_int_mops.value,
                    self.cpu_all_float_mflops.value,
                ])
                .exp(),
            ),
            "mem" => Some(self.mem_triad_mbs.value),
            "disk" => self.disk.as_ref().map(|d| {
                geo(&[
                    d.seq_write_mbs.value,
                    d.seq_read_mbs.value,
                    d.rand_read_iops.value,
                ])
                .exp()
            }),
            "net" => self
                .net
                .as_ref()
                .map(|n| n.upload_mbs.value / n.rtt_ms.value.max(1e-6)),
            _ => None,
        }
    }
}

/// Parses `plumb nodes --rank`'s list (`cpu,mem`), refusing unknown keys
/// by name.
pub fn parse_rank_keys(s: &str) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    for k in s.split(',').map(str::trim) {
        if k.is_empty() {
            continue;
        }
        if !RANK_KEYS.contains(&k) {
            return Err(format!(
                "unknown rank key `{k}`: use one or more of {} separated by commas",
                RANK_KEYS.join(", ")
            ));
        }
        if !keys.iter().any(|x| x == k) {
            keys.push(k.to_string());
        }
    }
    if keys.is_empty() {
        return Err(format!(
            "no rank key given: use one or more of {}",
            RANK_KEYS.join(", ")
        ));
    }
    Ok(keys)
}

/// Orders nodes' latest results best first by `keys`: the first key
/// decides, later keys break ties; a result without a key's figure goes
/// after those with it. Ties keep node-name order.
pub fn rank<'a>(benches: &'a [NodeBench], keys: &[String]) -> Vec<&'a NodeBench> {
    let mut v: Vec<&NodeBench> = benches.iter().collect();
    v.sort_by(|a, b| {
        for k in keys {
            let (x, y) = (a.score(k), b.score(k));
            let o = match (x, y) {
                (Some(x), Some(y)) => y.total_cmp(&x),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        a.node.cmp(&b.node)
    });
    v
}

/// A figure of a new result far worse than the median of the node's own
/// earlier results.
#[derive(Debug, Clone, PartialEq)]
pub struct Drop {
    /// The figure's name.
    pub figure: &'static str,
    /// Its words.
    pub label: &'static str,
    /// Its unit.
    pub unit: &'static str,
    /// The new value.
    pub value: f64,
    /// The median of the earlier results.
    pub median: f64,
    /// How much worse, percent.
    pub worse_pct: f64,
}

/// The fewest earlier results a comparison needs.
pub const MIN_HISTORY: usize = 3;

/// The figures of `latest` that are worse than the median of the same
/// figure in `earlier` by at least `drop_pct` percent (for a latency: that
/// much above it). Nothing when fewer than [`MIN_HISTORY`] earlier results
/// have the figure. Quick results are compared only with quick ones, full
/// with full.
pub fn drops(latest: &NodeBench, earlier: &[NodeBench], drop_pct: f64) -> Vec<Drop> {
    let mut out = Vec::new();
    for f in latest.figures() {
        let past: Vec<f64> = earlier
            .iter()
            .filter(|e| e.quick == latest.quick)
            .flat_map(|e| {
                e.figures()
                    .into_iter()
                    .filter(|g| g.name == f.name)
                    .map(|g| g.figure.value)
            })
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        if past.len() < MIN_HISTORY {
            continue;
        }
        let median = Figure::of(&past).value;
        let v = f.figure.value;
        let worse_pct = if f.higher_is_better {
            (median - v) / median * 100.0
        } else {
            (v - median) / median * 100.0
        };
        if worse_pct >= drop_pct {
            out.push(Drop {
                figure: f.name,
                label: f.label,
                unit: f.unit,
                value: v,
                median,
                worse_pct,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(v: f64) -> Figure {
        Figure {
            value: v,
            spread_pct: 1.0,
            reps: 3,
        }
    }

    pub(crate) fn bench(node: &str, cpu: f64, mem: f64) -> NodeBench {
        NodeBench {
            version: BENCH_VERSION,
            node: node.into(),
            taken_at: Timestamp::from_nanos(1),
            wall_s: 10.0,
            quick: false,
            cpus: 2,
            cpu_int_mops: fig(cpu),
            cpu_float_mflops: fig(cpu),
            cpu_all_int_mops: fig(cpu * 2.0),
            cpu_all_float_mflops: fig(cpu * 2.0),
            mem_triad_mbs: fig(mem),
            mem_bytes: 1 << 20,
            disk: None,
            net: None,
        }
    }

    #[test]
    fn median_and_spread() {
        let f = Figure::of(&[10.0, 12.0, 8.0]);
        assert_eq!(f.value, 10.0);
        assert!((f.spread_pct - 40.0).abs() < 1e-9);
        assert_eq!(f.reps, 3);
        assert_eq!(Figure::of(&[1.0, 3.0]).value, 2.0);
    }

    #[test]
    fn rank_orders_best_first_and_refuses_unknown_keys() {
        let v = [
            bench("a", 100.0, 5.0),
            bench("b", 300.0, 1.0),
            bench("c", 200.0, 9.0),
        ];
        let cpu: Vec<_> = rank(&v, &["cpu".into()])
            .iter()
            .map(|b| b.node.clone())
            .collect();
        assert_eq!(cpu, ["b", "c", "a"]);
        let mem: Vec<_> = rank(&v, &["mem".into()])
            .iter()
            .map(|b| b.node.clone())
            .collect();
        assert_eq!(mem, ["c", "a", "b"]);
        let e = parse_rank_keys("cpu,gpu").unwrap_err();
        assert!(e.contains("`gpu`"), "{e}");
        assert_eq!(parse_rank_keys("cpu, mem,cpu").unwrap(), ["cpu", "mem"]);
        assert!(parse_rank_keys("").is_err());
        // No disk figure: after those with one.
        let mut d = bench("z", 1.0, 1.0);
        d.disk = Some(DiskBench {
            path: "/tmp".into(),
            seq_write_mbs: fig(1.0),
            seq_read_mbs: fig(1.0),
            rand_read_iops: fig(1.0),
            cache_dropped: true,
            direct_io: true,
            note: None,
        });
        let v = [bench("a", 100.0, 5.0), d];
        assert_eq!(rank(&v, &["disk".into()])[0].node, "z");
    }

    #[test]
    fn a_drop_needs_history_and_names_the_figure() {
        let hist = vec![bench("a", 100.0, 1000.0); 3];
        let slow = bench("a", 50.0, 1000.0);
        assert!(
            drops(&slow, &hist[..2], 30.0).is_empty(),
            "too little history"
        );
        let d = drops(&slow, &hist, 30.0);
        assert_eq!(d.len(), 4, "{d:?}");
        assert_eq!(d[0].figure, "cpu_int");
        assert_eq!(d[0].value, 50.0);
        assert_eq!(d[0].median, 100.0);
        assert!(drops(&bench("a", 90.0, 1000.0), &hist, 30.0).is_empty());
        let mut quick = slow.clone();
        quick.quick = true;
        assert!(
            drops(&quick, &hist, 30.0).is_empty(),
            "quick vs full not compared"
        );
    }
}
