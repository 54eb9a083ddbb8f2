//! `plumb proxy`: run the Toxiproxy-compatible fault-injection proxy, or talk
//! to a running one.

use crate::out::{out, outln};
use anyhow::{Context, bail};
use plumb_model::text::Cell;
use plumb_proxy::Client;
use serde_json::{Map, Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Without a subcommand: run the proxy server. With one: act as a client of
/// the server at --host/--port.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Admin API host to listen on (server) or to talk to (client).
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1",
        env = "PLUMB_PROXY_HOST"
    )]
    host: String,
    /// Admin API port.
    #[arg(long, global = true, default_value_t = 8474, env = "PLUMB_PROXY_PORT")]
    port: u16,
    /// Server mode: proxies to create at start (a JSON array in /populate
    /// format; entries may carry "toxics").
    #[arg(long)]
    config: Option<PathBuf>,
    /// Server mode: connections each proxy serves at once; more are closed
    /// as they arrive and counted in /metrics.
    #[arg(long, default_value_t = plumb_proxy::DEFAULT_MAX_CONNECTIONS)]
    max_connections: u64,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// List proxies and their toxics.
    List,
    /// Show one proxy as JSON.
    Show { name: String },
    /// Create a proxy.
    Add {
        name: String,
        /// Address to forward to, e.g. 127.0.0.1:5432.
        #[arg(long)]
        upstream: String,
        /// Address to listen on; port 0 picks a free one.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Delete a proxy.
    Delete { name: String },
    /// Start listening again.
    Enable { name: String },
    /// Stop listening and close every connection (toxics are kept).
    Disable { name: String },
    /// Remove every toxic and enable every proxy.
    Reset,
    /// Create or replace proxies from a JSON file (the /populate format).
    Populate { file: PathBuf },
    /// Manage toxics.
    #[command(subcommand)]
    Toxic(ToxicCmd),
    /// Print the change log: proxy and toxic events with UTC times.
    Events {
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// Print the API's JSON (times as nanoseconds) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the Prometheus metrics.
    Metrics,
}

#[derive(Debug, clap::Subcommand)]
enum ToxicCmd {
    /// Add a toxic, e.g. `toxic add db --type latency -a latency=100`.
    Add {
        proxy: String,
        /// The toxic's type.
        #[arg(long = "type", short = 't', value_parser = clap::builder::PossibleValuesParser::new(plumb_proxy::model::TOXIC_TYPES))]
        kind: String,
        /// Defaults to <type>_<stream>.
        #[arg(long, short = 'n')]
        name: Option<String>,
        /// upstream (client to server) or downstream.
        #[arg(long, short = 's', default_value = "downstream")]
        stream: String,
        /// Probability per connection, 0.0 to 1.0.
        #[arg(long, default_value_t = 1.0)]
        toxicity: f64,
        /// Attribute as KEY=INTEGER; repeatable.
        #[arg(long = "attribute", short = 'a', value_name = "KEY=VALUE")]
        attributes: Vec<String>,
        /// Only affect these client addresses or CIDR ranges; repeatable.
        #[arg(long = "client")]
        clients: Vec<String>,
    },
    /// Change a toxic's attributes or toxicity.
    Update {
        proxy: String,
        name: String,
        #[arg(long)]
        toxicity: Option<f64>,
        #[arg(long = "attribute", short = 'a', value_name = "KEY=VALUE")]
        attributes: Vec<String>,
    },
    /// Remove a toxic.
    Remove { proxy: String, name: String },
}

fn attributes(pairs: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut m = Map::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else {
            bail!("attribute {p:?} must look like KEY=VALUE");
        };
        let n: i64 = v
            .trim()
            .parse()
            .with_context(|| format!("attribute {k}: {v:?} is not an integer"))?;
        m.insert(k.trim().to_string(), Value::from(n));
    }
    Ok(m)
}

/// The change log as a table: sequence number, UTC time, what happened,
/// the proxy and toxic concerned. Names come from API clients, so control
/// characters are escaped.
fn print_events(v: &Value) -> anyhow::Result<()> {
    let mut out = crate::out::stdout();
    if let Some(n) = v["dropped"].as_u64().filter(|n| *n > 0) {
        eprintln!(
            "plumb: {n} older events were dropped from the proxy's log (it keeps the last {})",
            plumb_proxy::EVENT_CAPACITY
        );
    }
    writeln!(
        out,
        "{:>6}  {:<30}  {:<16}  {:<20}  TOXIC",
        "SEQ", "TIME (UTC)", "EVENT", "PROXY"
    )?;
    for e in v["events"].as_array().into_iter().flatten() {
        let time = e["ts_ns"]
            .as_u64()
            .map(|ns| plumb_model::Timestamp::from_nanos(ns as i64).to_string())
            .unwrap_or_default();
        writeln!(
            out,
            "{:>6}  {:<30}  {:<16}  {:<20}  {}",
            e["seq"].as_u64().unwrap_or(0),
            time,
            Cell(e["kind"].as_str().unwrap_or("")),
            Cell(e["proxy"].as_str().unwrap_or("-")),
            Cell(e["toxic"].as_str().unwrap_or("-")),
        )?;
    }
    Ok(())
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let admin = format!("{}:{}", args.host, args.port);
    let Some(cmd) = args.command else {
        return serve(&admin, args.config, args.max_connections);
    };
    if args.config.is_some() {
        bail!(
            "--config is for server mode (plumb proxy without a subcommand); use `plumb proxy populate FILE` against a running server"
        );
    }
    let api = Client::new(admin);
    match cmd {
        Cmd::List => {
            let all = api.proxies()?;
            outln!(
                "{:<20} {:<22} {:<22} {:<8} TOXICS",
                "NAME",
                "LISTEN",
                "UPSTREAM",
                "ENABLED"
            );
            for (name, p) in all.as_object().into_iter().flatten() {
                let toxics: Vec<String> = p["toxics"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        format!(
                            "{}({},{})",
                            t["name"].as_str().unwrap_or(""),
                            t["type"].as_str().unwrap_or(""),
                            t["stream"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                outln!(
                    "{:<20} {:<22} {:<22} {:<8} {}",
                    Cell(name),
                    Cell(p["listen"].as_str().unwrap_or("")),
                    Cell(p["upstream"].as_str().unwrap_or("")),
                    p["enabled"].to_string(),
                    Cell(&toxics.join(" "))
                );
            }
        }
        Cmd::Show { name } => print_json(&api.proxy(&name)?)?,
        Cmd::Add {
            name,
            upstream,
            listen,
            disabled,
        } => {
            let body =
                json!({"name": name, "listen": listen, "upstream": upstream, "enabled": !disabled});
            print_json(&api.call("POST", "/proxies", Some(&body))?)?;
        }
        Cmd::Delete { name } => api.delete_proxy(&name)?,
        Cmd::Enable { name } => print_json(&api.update_proxy(&name, &json!({"enabled": true}))?)?,
        Cmd::Disable { name } => print_json(&api.update_proxy(&name, &json!({"enabled": false}))?)?,
        Cmd::Reset => api.reset()?,
        Cmd::Populate { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let v: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            print_json(&api.populate(&v)?)?;
        }
        Cmd::Toxic(ToxicCmd::Add {
            proxy,
            kind,
            name,
            stream,
            toxicity,
            attributes: a,
            clients,
        }) => {
            let mut body = json!({"type": kind, "stream": stream, "toxicity": toxicity, "attributes": attributes(&a)?});
            if let Some(n) = name {
                body["name"] = Value::from(n);
            }
            if !clients.is_empty() {
                body["clients"] = Value::from(clients);
            }
            print_json(&api.add_toxic(&proxy, &body)?)?;
        }
        Cmd::Toxic(ToxicCmd::Update {
            proxy,
            name,
            toxicity,
            attributes: a,
        }) => {
            let mut body = json!({"attributes": attributes(&a)?});
            if let Some(t) = toxicity {
                body["toxicity"] = Value::from(t);
            }
            print_json(&api.update_toxic(&proxy, &name, &body)?)?;
        }
        Cmd::Toxic(ToxicCmd::Remove { proxy, name }) => api.remove_toxic(&proxy, &name)?,
        Cmd::Events { since, json: true } => print_json(&api.events(since)?)?,
        Cmd::Events { since, json: false } => print_events(&api.events(since)?)?,
        Cmd::Metrics => out!("{}", api.metrics()?),
    }
    Ok(ExitCode::SUCCESS)
}

fn serve(admin: &str, config: Option<PathBuf>, max_connections: u64) -> anyhow::Result<ExitCode> {
    if let Err(error) = plumb_proxy::raise_fd_limit() {
        tracing::warn!(%error, "cannot raise the open-file limit");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let server = plumb_proxy::Server::bind(admin).await?;
        server.set_max_connections_per_proxy(max_connections);
        if let Some(path) = &config {
            let n = server.load_config(path)?;
            tracing::info!(proxies = n, config = %path.display(), "config loaded");
        }
        // With a collector configured, every proxy and toxic change is
        // shipped to it as a log record, on the same timeline as the runs.
        let cfg = crate::config::Config::load()?;
        let _events = match cfg.collector.clone() {
            Some(url) => {
                // The event shipper backs off between batches itself.
                let client = plumb_http::Client::new(&plumb_http::Config {
                    timeout: std::time::Duration::from_secs(10),
                    retry: plumb_http::Retry::NEVER,
                    ..crate::target::client_config(&cfg, &url)
                })
                .with_context(|| format!("collector {url}"))?;
                eprintln!("plumb proxy: shipping events to {url}");
                Some(
                    server
                        .ship_events(client)
                        .context("starting the event shipper")?,
                )
            }
            None => None,
        };
        // Scripts wait for this line to know the API is up.
        eprintln!("plumb proxy: admin API on http://{}", server.local_addr());
        server
            .serve(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
