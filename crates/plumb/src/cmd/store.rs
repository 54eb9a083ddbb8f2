//! `plumb store copy`: a whole store moved to another place or backend
//! (SQLite to PostgreSQL and back, or the same backend elsewhere), table
//! by table in batches, then compared: per table the row count and a
//! content hash computed the same way on both sides. The tables, the loop
//! and the hash are `plumb_store::copy`'s; this is the command around
//! them (where the stores are, progress, the table printed at the end).

use crate::out::outln;
use anyhow::{Context, Result, bail};
use plumb_store::Backend;
use plumb_store::copy::{self, Batch, Digest, Role};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `plumb store`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: StoreCommand,
}

/// What to do with a store.
#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Copy a whole store to another place or backend, then compare both.
    ///
    /// Every table is copied in batches, each row with its identity, so a
    /// row the target holds already is skipped: run the same command again
    /// after an interruption and it finishes what was left. At the end each
    /// table's row count and content hash are compared on both sides and
    /// printed; a table that differs is named and the exit status is not 0.
    ///
    /// The target must be a new store or an earlier copy of the same
    /// source. A target from a newer plumb is refused. A source that a
    /// collector is serving can be copied, but writes made during the copy
    /// may be missed (a row added behind the copy's position, a run whose
    /// record changes after it was copied): stop the source's collectors
    /// and run the copy again for an exact copy; the comparison tells.
    #[command(verbatim_doc_comment)]
    Copy(CopyArgs),
}

/// Arguments of `plumb store copy`.
#[derive(Debug, clap::Args)]
pub struct CopyArgs {
    /// The store to copy: postgres://user@host:port/db[?schema=NAME],
    /// sqlite:DIR, or a store directory, as `plumb serve --store` takes it.
    /// It is only read.
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// Where to copy it (same forms); created when it does not exist.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Rows per batch at most (a batch also stops at about 16 MiB).
    #[arg(long, default_value_t = 1000, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
}

pub fn main(a: Args) -> Result<ExitCode> {
    match a.command {
        StoreCommand::Copy(c) => copy_store(c),
    }
}

/// A store named on the command line.
enum Place {
    Sqlite(PathBuf),
    Postgres(Box<plumb_store_postgres::PgConnector>),
}

impl Place {
    fn parse(flag: &str, arg: &str) -> Result<Place> {
        if arg.is_empty() {
            bail!("{flag}: give a store (postgres://..., sqlite:DIR or a directory)");
        }
        if plumb_store_postgres::is_postgres_url(arg) {
            let c =
                plumb_store_postgres::PgConnector::new(arg).with_context(|| flag.to_string())?;
            return Ok(Place::Postgres(Box::new(c)));
        }
        if let Some(dir) = arg
            .strip_prefix("sqlite://")
            .or_else(|| arg.strip_prefix("sqlite:"))
        {
            if dir.is_empty() {
                bail!("{flag} `{arg}`: sqlite:DIR needs the store directory after the colon");
            }
            return Ok(Place::Sqlite(PathBuf::from(dir)));
        }
        if let Some((scheme, _)) = arg.split_once("://") {
            bail!(
                "{flag} `{arg}`: `{scheme}://` is not a store URL: use postgres://user@host:port/database, sqlite:DIR or a store directory"
            );
        }
        Ok(Place::Sqlite(PathBuf::from(arg)))
    }

    fn describe(&self) -> String {
        match self {
            Place::Sqlite(d) => d.display().to_string(),
            Place::Postgres(c) => plumb_store::Connector::describe(&**c),
        }
    }

    /// The place as one string per store: a directory resolved (as far as
    /// it exists), a URL without its password.
    fn identity(&self) -> String {
        match self {
            Place::Sqlite(d) => format!("sqlite:{}", resolve(d).display()),
            Place::Postgres(c) => plumb_store::Connector::describe(&**c),
        }
    }
}

/// `dir` made absolute with its existing part's symlinks resolved, so two
/// spellings of one directory compare equal.
fn resolve(dir: &Path) -> PathBuf {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut tail = Vec::new();
    let mut head = abs.as_path();
    // Bounded by the path's depth.
    loop {
        if let Ok(real) = head.canonicalize() {
            let mut out = real;
            for part in tail.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (head.parent(), head.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_os_string());
                head = parent;
            }
            _ => return abs,
        }
    }
}

/// Opens the source for reading; it must exist.
fn open_source(place: &Place) -> Result<Box<dyn Backend>> {
    let store: Box<dyn Backend> = match place {
        Place::Sqlite(dir) => {
            if !dir.is_dir() {
                bail!(
                    "--from {}: no such directory (the source store must exist)",
                    dir.display()
                );
            }
            let db = dir.join("plumb.db");
            if !db.is_file() {
                bail!(
                    "--from {}: no plumb store there ({} does not exist)",
                    dir.display(),
                    db.display()
                );
            }
            Box::new(
                plumb_store::Store::open_read_only(dir)
                    .with_context(|| format!("cannot open the source store {}", dir.display()))?,
            )
        }
        Place::Postgres(c) => Box::new(
            c.open_read_only()
                .with_context(|| format!("cannot open the source store {}", place.describe()))?,
        ),
    };
    let wrong =
        copy::schema_mismatches(&store.raw_schema().context("reading the source's schema")?);
    if !wrong.is_empty() {
        bail!(
            "the source store {} is not of this plumb's schema ({}): open it once with this plumb (`plumb serve --store {}`) to bring it up to date, then copy",
            place.describe(),
            wrong.join("; "),
            place.describe()
        );
    }
    Ok(store)
}

/// Opens (creating or migrating) the target.
fn open_target(place: &Place) -> Result<Box<dyn Backend>> {
    let store: Box<dyn Backend> = match place {
        Place::Sqlite(dir) => Box::new(plumb_store::Store::open(dir)?),
        Place::Postgres(c) => Box::new(c.open()?),
    };
    Ok(store)
}

/// Refuses a target that holds runs the source has not: another store,
/// whose rows the copy would mix with the source's. Its first runs (in id
/// order) are looked up in the source; a new store or an earlier copy of
/// this source passes.
fn refuse_another_store(source: &dyn Backend, target: &dyn Backend, to: &Place) -> Result<()> {
    let runs = copy::table("runs").expect("runs is copied");
    for row in target.raw_rows(runs, None, 100, 1 << 20)? {
        let Some(id) = row[0].as_text() else { continue };
        let Ok(uuid) = plumb_model::Uuid::parse_str(id) else {
            continue;
        };
        match source.get_run(uuid) {
            Ok(_) => {}
            Err(e) if e.kind() == plumb_store::ErrorKind::NotFound => bail!(
                "the target store {} holds runs the source has not (run {id}): it is another store; copy into a new one, or into an earlier copy of this source",
                to.describe()
            ),
            Err(e) => return Err(e).context("looking up the target's runs in the source"),
        }
    }
    Ok(())
}

/// Progress on stderr: a line updated in place on a terminal, else one
/// line per table.
struct Progress {
    tty: bool,
    last: Instant,
}

impl Progress {
    fn tick(&mut self, verb: &str, table: &str, rows: u64) {
        if self.tty && self.last.elapsed() >= Duration::from_millis(200) {
            self.last = Instant::now();
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[K{verb} {table}: {rows} rows");
            let _ = e.flush();
        }
    }

    fn done(&mut self, line: &str) {
        let mut e = std::io::stderr().lock();
        if self.tty {
            let _ = write!(e, "\r\x1b[K");
        }
        let _ = writeln!(e, "{line}");
    }
}

fn copy_store(a: CopyArgs) -> Result<ExitCode> {
    let from = Place::parse("--from", &a.from)?;
    let to = Place::parse("--to", &a.to)?;
    if from.identity() == to.identity() {
        bail!(
            "--from and --to name the same store ({}): copy to another one",
            from.describe()
        );
    }
    let source = open_source(&from)?;
    let target = open_target(&to)
        .with_context(|| format!("cannot open the target store {}", to.describe()))?;
    let wrong = copy::schema_mismatches(&target.raw_schema()?);
    if !wrong.is_empty() {
        bail!(
            "the target store {} is not of this plumb's schema: {}",
            to.describe(),
            wrong.join("; ")
        );
    }
    refuse_another_store(&*source, &*target, &to)?;
    let batch = Batch {
        rows: a.batch as usize,
        ..Batch::default()
    };
    let mut progress = Progress {
        tty: std::io::stderr().is_terminal(),
        last: Instant::now(),
    };
    progress.done(&format!("copying {} to {}", from.describe(), to.describe()));
    let started = Instant::now();
    let (mut rows, mut bytes) = (0u64, 0u64);
    let mut copied = Vec::with_capacity(copy::TABLES.len());
    for t in copy::TABLES {
        let at = Instant::now();
        let c = copy::copy_table(&*source, &*target, t, batch, &mut |n| {
            progress.tick("copying", t.name, n)
        })
        .with_context(|| format!("copying table {}", t.name))?;
        rows += c.source.rows;
        bytes += c.bytes;
        let what = match t.role {
            Role::Copied => format!("{} new", c.inserted),
            Role::Derived => "kept by the target from its runs".into(),
        };
        progress.done(&format!(
            "{}: {} rows ({what}) in {:.1}s",
            t.name,
            c.source.rows,
            at.elapsed().as_secs_f64()
        ));
        copied.push(c);
    }
    target
        .raw_ids_advance()
        .context("moving the target's id counters past the copied ids")?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    progress.done(&format!(
        "copied {rows} rows ({:.1} MB) in {secs:.1}s: {:.0} rows/s, {:.1} MB/s; comparing",
        bytes as f64 / 1e6,
        rows as f64 / secs,
        bytes as f64 / 1e6 / secs
    ));
    let mut differ = Vec::new();
    let mut lines = Vec::with_capacity(copy::TABLES.len());
    for (t, c) in copy::TABLES.iter().zip(&copied) {
        let d: Digest = copy::digest(&*target, t, batch, &mut |n| {
            progress.tick("comparing", t.name, n)
        })
        .with_context(|| format!("reading table {} of the target", t.name))?;
        let same = d == c.source;
        if !same {
            differ.push(t.name);
        }
        lines.push((t.name, c.source.rows, d.rows, c.inserted, t.role, same));
    }
    if progress.tty {
        progress.done("");
    }
    outln!(
        "{:<18} {:>12} {:>12} {:>10}  HASH",
        "TABLE",
        "SOURCE ROWS",
        "TARGET ROWS",
        "COPIED"
    );
    for (name, src, dst, new, role, same) in lines {
        let new = match role {
            Role::Copied => new.to_string(),
            Role::Derived => "derived".into(),
        };
        outln!(
            "{name:<18} {src:>12} {dst:>12} {new:>10}  {}",
            if same { "equal" } else { "DIFFERS" }
        );
    }
    for (name, why) in copy::SKIPPED {
        outln!(
            "{name:<18} {:>12} {:>12} {:>10}  skipped: {why}",
            "-",
            "-",
            "-"
        );
    }
    if !differ.is_empty() {
        bail!(
            "the target differs from the source in {}: it held other rows before the copy, or the source changed during it (run the copy again with the source's collectors stopped)",
            differ.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
