//! What plumb adds to Toxiproxy: connection-open toxics, client-address
//! targeting, stall windows, dropped connections, half-close, toxics in
//! /populate and config files, live metrics, and the event log.

use crate::support::*;
use serde_json::json;
use std::io::{ErrorKind, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

#[test]
fn refuse_open_and_slow_open() {
    let f = server();
    let addr = f.proxy("p", echo_server());
    f.toxic("p", json!({"type": "refuse_open"}));
    // Reading only: a write racing the RST would consume the error.
    let mut s = connect(addr);
    let (_, end) = read_to_end(&mut s);
    assert_eq!(end, Err(ErrorKind::ConnectionReset));
    f.api.remove_toxic("p", "refuse_open_downstream").unwrap();

    f.toxic(
        "p",
        json!({"type": "slow_open", "attributes": {"delay": 300}}),
    );
    let t = Instant::now();
    let mut s = connect(addr);
    round_trip(&mut s, b"hi");
    assert!(
        t.elapsed() >= Duration::from_millis(280),
        "{:?}",
        t.elapsed()
    );
    // Only the opening is slow.
    assert!(round_trip(&mut s, b"again") < Duration::from_millis(250));
}

#[test]
fn toxics_can_target_client_addresses() {
    let f = server();
    let addr = f.proxy("p", echo_server());
    f.toxic(
        "p",
        json!({"type": "latency", "attributes": {"latency": 300}, "clients": ["127.0.0.2/32"]}),
    );
    let shown = f
        .api
        .call("GET", "/proxies/p/toxics/latency_downstream", None)
        .unwrap();
    assert_eq!(shown["clients"], json!(["127.0.0.2"]));
    // From 127.0.0.1: untouched.
    assert!(round_trip(&mut connect(addr), b"a") < Duration::from_millis(250));
    // From 127.0.0.2: slowed.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(
        &"127.0.0.2:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    sock.connect(&addr.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(round_trip(&mut s, b"b") >= Duration::from_millis(280));
}

#[test]
fn stall_windows_pause_data() {
    let f = server();
    let addr = f.proxy("p", echo_server());
    f.toxic(
        "p",
        json!({"type": "stall", "attributes": {"interval": 10000, "duration": 400}}),
    );
    let mut s = connect(addr);
    // The connection starts inside a stall window.
    assert!(round_trip(&mut s, b"a") >= Duration::from_millis(300));
    assert!(round_trip(&mut s, b"b") < Duration::from_millis(300));
    let r = f
        .api
        .raw(
            "POST",
            "/proxies/p/toxics",
            Some(br#"{"name":"bad","type":"stall","attributes":{"interval":10,"duration":20}}"#),
        )
        .unwrap();
    assert_eq!(r.status, 400);
}

#[test]
fn drop_connection_resets() {
    let f = server();
    let addr = f.proxy("p", echo_server());
    f.toxic(
        "p",
        json!({"type": "drop_connection", "stream": "upstream", "attributes": {"per_mille": 1000}}),
    );
    let mut s = connect(addr);
    s.write_all(b"x").unwrap();
    assert_eq!(read_to_end(&mut s).1, Err(ErrorKind::ConnectionReset));
}

#[test]
fn half_close_is_propagated() {
    let f = server();
    let addr = f.proxy("p", echo_server());
    for with_toxic in [false, true] {
        if with_toxic {
            // The userspace path must behave the same as the splice path.
            f.toxic("p", json!({"type": "noop"}));
            f.toxic("p", json!({"type": "noop", "stream": "upstream"}));
        }
        let mut s = connect(addr);
        s.write_all(b"request").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        // The echo server answers EOF only after reading ours; we still get
        // the whole answer on the open half.
        let (data, end) = read_to_end(&mut s);
        assert_eq!(data, b"request", "with toxic: {with_toxic}");
        assert_eq!(end, Ok(()));
    }
}

#[test]
fn toxics_in_populate_and_config() {
    let f = server();
    let up = echo_server();
    let list = json!([{"name": "db", "listen": "127.0.0.1:0", "upstream": up.to_string(),
        "toxics": [{"type": "latency", "attributes": {"latency": 200}}]}]);
    let r = f.api.populate(&list).unwrap();
    assert_eq!(r["proxies"][0]["toxics"][0]["name"], "latency_downstream");
    let addr = r["proxies"][0]["listen"].as_str().unwrap().parse().unwrap();
    assert!(round_trip(&mut connect(addr), b"x") >= Duration::from_millis(180));
    let bad = json!([{"name": "x", "upstream": "127.0.0.1:1", "toxics": [{"type": "nope"}]}]);
    let e = f.api.populate(&bad).unwrap_err().to_string();
    assert!(
        e.contains("invalid toxic type") && e.contains("toxics[0] of proxy x"),
        "{e}"
    );

    // A config file, read by the server at start.
    let dir = std::env::temp_dir().join(format!("plumb-proxy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("proxies.json");
    std::fs::write(&path, list.to_string()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let server = plumb_proxy::Server::bind("127.0.0.1:0").await.unwrap();
        assert_eq!(server.load_config(&path).unwrap(), 1);
        std::fs::write(&path, b"{not json").unwrap();
        let e = server.load_config(&path).unwrap_err().to_string();
        assert!(
            e.contains("proxies.json:1:") && e.contains("key must be a string"),
            "{e}"
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn metric(text: &str, prefix: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

#[test]
fn metrics_update_while_connections_are_open() {
    let f = server();
    let addr = f.proxy("m", echo_server());
    let mut s = connect(addr);
    round_trip(&mut s, &pattern(5000));
    let text = f.api.metrics().unwrap();
    let up = "toxiproxy_proxy_sent_bytes_total{direction=\"upstream\",proxy=\"m\"";
    let down = "toxiproxy_proxy_received_bytes_total{direction=\"downstream\",proxy=\"m\"";
    assert_eq!(
        metric(&text, up),
        5000,
        "counted before the connection ends"
    );
    assert_eq!(metric(&text, down), 5000);
    assert_eq!(
        metric(&text, "plumb_proxy_connections_active{proxy=\"m\""),
        1
    );
    f.toxic("m", json!({"type": "noop"}));
    round_trip(&mut s, b"12345");
    let text = f.api.metrics().unwrap();
    assert_eq!(metric(&text, up), 5005);
    assert_eq!(
        metric(
            &text,
            "plumb_proxy_toxic_activations_total{proxy=\"m\",toxic=\"noop_downstream\",type=\"noop\"}"
        ),
        1
    );
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(
        &f.api.metrics().unwrap(),
        "plumb_proxy_connections_active{proxy=\"m\"",
    ) != 0
    {
        assert!(
            Instant::now() < deadline,
            "connection never counted as closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_change_is_an_event() {
    let f = server();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    f.proxy("e", echo_server());
    f.toxic("e", latency(1));
    f.api
        .update_toxic(
            "e",
            "latency_downstream",
            &json!({"attributes": {"latency": 2}}),
        )
        .unwrap();
    f.api.remove_toxic("e", "latency_downstream").unwrap();
    f.api.update_proxy("e", &json!({"enabled": false})).unwrap();
    f.api.reset().unwrap();
    f.api.delete_proxy("e").unwrap();
    let v = f.api.events(0).unwrap();
    let evs = v["events"].as_array().unwrap();
    let kinds: Vec<_> = evs.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "proxy_created",
            "toxic_added",
            "toxic_updated",
            "toxic_removed",
            "proxy_updated",
            "reset",
            "proxy_deleted"
        ]
    );
    let mut last = before;
    for e in evs {
        let ts = e["ts_ns"].as_u64().unwrap();
        assert!(ts >= last, "UTC ns timestamps in order");
        last = ts;
    }
    assert_eq!(evs[2]["detail"]["attributes"]["latency"], 2);
    let later = f.api.events(evs[4]["seq"].as_u64().unwrap()).unwrap();
    assert_eq!(later["events"].as_array().unwrap().len(), 2);
    assert_eq!(
        f.api.raw("GET", "/events?since=x", None).unwrap().status,
        400
    );
}

#[test]
fn http_error_answers_a_share_of_requests() {
    use std::sync::atomic::Ordering;
    let f = server();
    let (up, seen) = http_server(5);
    let addr = f.proxy("web", up);
    let t = f.toxic(
        "web",
        json!({"type": "http_error", "attributes": {"status": 429, "per_mille": 1000}}),
    );
    assert_eq!(t["stream"], "upstream", "http_error defaults to requests");
    let mut s = connect(addr);
    let (status, body) = http_get(&mut s);
    assert_eq!(status, 429);
    assert!(String::from_utf8_lossy(&body).contains("injected 429"));
    assert_eq!(
        read_to_end(&mut s).0,
        b"",
        "connection closed after the answer"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 0, "the server never saw it");

    f.api
        .update_toxic(
            "web",
            "http_error_upstream",
            &json!({"attributes": {"status": 503, "per_mille": 500}}),
        )
        .unwrap();
    let mut codes = std::collections::BTreeMap::new();
    for _ in 0..30 {
        *codes.entry(http_get(&mut connect(addr)).0).or_insert(0) += 1;
    }
    assert!(
        codes.get(&503).is_some_and(|n| *n > 0) && codes.get(&200).is_some_and(|n| *n > 0),
        "{codes:?}"
    );
    let r = f
        .api
        .raw(
            "POST",
            "/proxies/web/toxics",
            Some(br#"{"type":"http_error","stream":"downstream"}"#),
        )
        .unwrap();
    assert_eq!(r.status, 400);
}

#[test]
fn http_latency_is_per_request() {
    let f = server();
    let (up, _) = http_server(100_000);
    let addr = f.proxy("web", up);
    f.toxic(
        "web",
        json!({"type": "http_latency", "stream": "upstream", "attributes": {"latency": 200}}),
    );
    let mut s = connect(addr);
    for _ in 0..2 {
        let t = Instant::now();
        let (status, body) = http_get(&mut s);
        assert_eq!(status, 200);
        assert!(body == pattern(100_000));
        let d = t.elapsed();
        // Once per request, not once per chunk of the 100 kB answer.
        assert!(
            d >= Duration::from_millis(190) && d < Duration::from_millis(1500),
            "{d:?}"
        );
    }
}

#[test]
fn http_drip_slows_the_body_only() {
    let f = server();
    let (up, _) = http_server(100);
    let addr = f.proxy("web", up);
    f.toxic(
        "web",
        json!({"type": "http_drip", "attributes": {"bytes": 10, "delay": 30}}),
    );
    let mut s = connect(addr);
    for _ in 0..2 {
        let t = Instant::now();
        let (status, body) = http_get(&mut s);
        assert_eq!(status, 200);
        assert_eq!(body, pattern(100));
        // Ten pieces, 30 ms apart.
        assert!(
            t.elapsed() >= Duration::from_millis(270),
            "{:?}",
            t.elapsed()
        );
    }
}

/// Issue 21: a proxy whose upstream was its own listen address took 20,000
/// descriptors within a second and wedged every other proxy and the API.
#[test]
fn issue_21_an_upstream_that_is_one_of_this_process_s_listeners_is_refused() {
    let f = server();
    let up = echo_server();
    let refused = |r: plumb_proxy::client::RawResponse, what: &str| {
        let text = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(r.status, 400, "{what}: {text}");
        assert!(text.contains("loop back"), "{what}: {text}");
        text
    };
    // Its own listen address, on a port known in advance.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for upstream in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("0.0.0.0:{port}"),
    ] {
        let body =
            json!({"name": "self", "listen": format!("127.0.0.1:{port}"), "upstream": upstream});
        let r = f
            .api
            .raw("POST", "/proxies", Some(body.to_string().as_bytes()))
            .unwrap();
        let text = refused(r, &upstream);
        assert!(text.contains("proxy self itself"), "{text}");
    }
    // The admin API.
    let body = json!({"name": "admin", "listen": "127.0.0.1:0", "upstream": f.admin()});
    let text = refused(
        f.api
            .raw("POST", "/proxies", Some(body.to_string().as_bytes()))
            .unwrap(),
        "admin",
    );
    assert!(text.contains("admin API"), "{text}");
    // Another proxy's listener, also when a 0.0.0.0 listener is named by
    // loopback.
    let a = f.proxy("a", up);
    let body = json!({"name": "b", "listen": "127.0.0.1:0", "upstream": a.to_string()});
    let text = refused(
        f.api
            .raw("POST", "/proxies", Some(body.to_string().as_bytes()))
            .unwrap(),
        "another proxy",
    );
    assert!(text.contains("proxy a"), "{text}");
    let wide = f
        .api
        .create_proxy("wide", "0.0.0.0:0", &up.to_string())
        .unwrap();
    let wide_port = wide["listen"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let body =
        json!({"name": "c", "listen": "127.0.0.1:0", "upstream": format!("127.0.0.1:{wide_port}")});
    refused(
        f.api
            .raw("POST", "/proxies", Some(body.to_string().as_bytes()))
            .unwrap(),
        "0.0.0.0 listener",
    );
    // On update, and through /populate.
    f.proxy("d", up);
    let body = json!({"upstream": a.to_string()});
    refused(
        f.api
            .raw("POST", "/proxies/d", Some(body.to_string().as_bytes()))
            .unwrap(),
        "update",
    );
    assert_eq!(f.api.proxies().unwrap()["d"]["upstream"], up.to_string());
    let body = json!([{"name": "e", "listen": format!("127.0.0.1:{port}"), "upstream": format!("127.0.0.1:{port}")}]);
    refused(
        f.api
            .raw("POST", "/populate", Some(body.to_string().as_bytes()))
            .unwrap(),
        "populate",
    );
    // Nothing half-created, and the API still answers.
    let proxies = f.api.proxies().unwrap();
    let names: Vec<&String> = proxies.as_object().unwrap().keys().collect();
    assert_eq!(names, ["a", "d", "wide"]);
    assert_eq!(f.api.raw("GET", "/version", None).unwrap().status, 200);
    // Proxies still pass traffic.
    let mut s = connect(a);
    round_trip(&mut s, b"still here");
}

/// Issue 21: each proxy serves a bounded number of connections, so a loop
/// through proxies (of two processes) or a flood of clients cannot take
/// every descriptor; the excess is closed at once and counted.
#[test]
fn issue_21_connections_past_a_proxy_s_cap_are_closed_and_counted() {
    let f = server();
    f.server.set_max_connections_per_proxy(5);
    let up = echo_server();
    let p = f.proxy("capped", up);
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut s = connect(p);
        round_trip(&mut s, b"ping");
        held.push(s);
    }
    // Past the cap: closed without reaching the upstream.
    for _ in 0..7 {
        let mut s = connect(p);
        let _ = s.write_all(b"ping");
        let (got, _) = read_to_end(&mut s);
        assert!(got.is_empty(), "a connection past the cap was served");
    }
    let metrics = f.api.metrics().unwrap();
    assert!(
        metrics.contains("plumb_proxy_connections_refused_total{proxy=\"capped\""),
        "{metrics}"
    );
    let refused: u64 = metrics
        .lines()
        .find(|l| l.starts_with("plumb_proxy_connections_refused_total{proxy=\"capped\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap();
    assert_eq!(refused, 7, "{metrics}");
    // Room again once held connections close.
    drop(held);
    let mut ok = false;
    for _ in 0..50 {
        let mut s = connect(p);
        let _ = s.write_all(b"ping");
        let mut buf = [0u8; 4];
        if std::io::Read::read_exact(&mut s, &mut buf).is_ok() {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ok, "the proxy never served again");
}

/// Issue 21, the admin API's side: a client sending its headers a byte at a
/// time is cut off rather than held forever.
#[test]
fn issue_21_the_admin_api_cuts_off_slow_headers() {
    use std::io::Read;
    let f = server();
    let mut s = TcpStream::connect(f.server.admin_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let head = b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    // One byte a second, for up to 40 s; the timeout is 10 s.
    for b in head.iter().take(40) {
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            _ => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "slow headers held an admin API connection for 40 s");
    assert_eq!(f.api.raw("GET", "/version", None).unwrap().status, 200);
}
