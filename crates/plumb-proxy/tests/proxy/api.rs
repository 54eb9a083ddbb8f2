//! The admin API, endpoint by endpoint, against Toxiproxy's statuses, shapes
//! and messages.

use crate::support::*;
use serde_json::{Value, json};
use std::net::TcpStream;

fn body_json(r: &plumb_proxy::client::RawResponse) -> Value {
    r.json()
        .unwrap_or_else(|| panic!("not JSON: {:?}", String::from_utf8_lossy(&r.body)))
}

fn assert_error(r: &plumb_proxy::client::RawResponse, status: u16, message: &str) {
    assert_eq!(r.status, status, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(
        r.body.ends_with(b"\n"),
        "Go's http.Error ends with a newline"
    );
    assert_eq!(body_json(r), json!({"error": message, "status": status}));
}

#[test]
fn version_and_middleware() {
    let f = server();
    let r = f.api.raw("GET", "/version", None).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/json;charset=utf-8")
    );
    assert_eq!(r.body, b"{\"version\": \"2.12.0\"}\n");
    assert!(
        r.header("x-toxiproxy-request-id")
            .is_some_and(|v| !v.is_empty())
    );

    // Browsers are refused, as in Toxiproxy.
    let mut s = TcpStream::connect(f.server.admin_addr()).unwrap();
    use std::io::{Read, Write};
    s.write_all(
        b"GET /proxies HTTP/1.1\r\nHost: x\r\nUser-Agent: Mozilla/5.0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(out.ends_with("User agent not allowed\n"), "{out}");

    let r = f.api.raw("GET", "/nope", None).unwrap();
    assert_eq!(r.status, 404);
}

#[test]
fn proxy_lifecycle() {
    let f = server();
    let up = echo_server();
    let body = json!({"name": "echo", "listen": "localhost:0", "upstream": up.to_string()});
    let r = f
        .api
        .raw("POST", "/proxies", Some(body.to_string().as_bytes()))
        .unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let p = body_json(&r);
    assert_eq!(p["name"], "echo");
    assert_eq!(p["upstream"], up.to_string());
    assert_eq!(p["enabled"], true);
    assert_eq!(p["toxics"], json!([]));
    let listen = p["listen"].as_str().unwrap();
    assert!(
        listen.starts_with("127.0.0.1:") && !listen.ends_with(":0"),
        "hostname resolved and port bound: {listen}"
    );
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    round_trip(&mut connect(addr), b"hello");

    // Duplicates and missing fields.
    let r = f
        .api
        .raw("POST", "/proxies", Some(body.to_string().as_bytes()))
        .unwrap();
    assert_error(&r, 409, "proxy already exists");
    let r = f
        .api
        .raw("POST", "/proxies", Some(br#"{"upstream":"127.0.0.1:1"}"#))
        .unwrap();
    assert_error(&r, 400, "missing required field: name");
    let r = f
        .api
        .raw("POST", "/proxies", Some(br#"{"name":"x"}"#))
        .unwrap();
    assert_error(&r, 400, "missing required field: upstream");
    let r = f.api.raw("POST", "/proxies", Some(b"{nope")).unwrap();
    assert_eq!(r.status, 400);
    assert!(
        body_json(&r)["error"]
            .as_str()
            .unwrap()
            .starts_with("bad request body: ")
    );

    // Index keyed by name, show, 404.
    let all = f.api.proxies().unwrap();
    assert_eq!(all["echo"]["listen"], listen);
    assert_eq!(f.api.proxy("echo").unwrap()["upstream"], up.to_string());
    assert_error(
        &f.api.raw("GET", "/proxies/missing", None).unwrap(),
        404,
        "proxy not found",
    );

    // Disable with POST (the old way, used by most clients): refused, and the
    // live connection is closed.
    let mut live = connect(addr);
    round_trip(&mut live, b"x");
    let r = f
        .api
        .raw("POST", "/proxies/echo", Some(br#"{"enabled":false}"#))
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(body_json(&r)["enabled"], false);
    assert_eq!(
        body_json(&r)["listen"],
        listen,
        "the address is kept while disabled"
    );
    let (_, end) = read_to_end(&mut live);
    assert!(end.is_ok() || end == Err(std::io::ErrorKind::ConnectionReset));
    assert!(TcpStream::connect(addr).is_err(), "disabled proxy refuses");
    // Enable with PATCH: same address again.
    let r = f
        .api
        .raw("PATCH", "/proxies/echo", Some(br#"{"enabled":true}"#))
        .unwrap();
    assert_eq!(body_json(&r)["enabled"], true);
    round_trip(&mut connect(addr), b"back");

    // Changing the upstream keeps the name and moves traffic.
    let up2 = source_server(3);
    let r = f
        .api
        .update_proxy("echo", &json!({"upstream": up2.to_string()}))
        .unwrap();
    assert_eq!(r["upstream"], up2.to_string());
    let addr2: std::net::SocketAddr = r["listen"].as_str().unwrap().parse().unwrap();
    assert_eq!(read_to_end(&mut connect(addr2)).0, pattern(3));

    // Delete: 204, then gone.
    let r = f.api.raw("DELETE", "/proxies/echo", None).unwrap();
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_error(
        &f.api.raw("DELETE", "/proxies/echo", None).unwrap(),
        404,
        "proxy not found",
    );
    assert!(TcpStream::connect(addr2).is_err());
}

#[test]
fn bind_conflict_is_500() {
    let f = server();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let body = json!({"name": "c", "listen": taken.local_addr().unwrap().to_string(), "upstream": "127.0.0.1:1"});
    let r = f
        .api
        .raw("POST", "/proxies", Some(body.to_string().as_bytes()))
        .unwrap();
    assert_eq!(r.status, 500);
    assert!(
        body_json(&r)["error"]
            .as_str()
            .unwrap()
            .contains("listen tcp")
    );
    assert_eq!(f.api.proxies().unwrap(), json!({}), "nothing half-created");
}

#[test]
fn toxic_endpoints() {
    let f = server();
    f.proxy("p", echo_server());
    // Defaults: downstream, toxicity 1, name type_stream, status 200.
    let r = f
        .api
        .raw(
            "POST",
            "/proxies/p/toxics",
            Some(br#"{"type":"latency","attributes":{"latency":10},"unknown":1}"#),
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        body_json(&r),
        json!({"attributes": {"latency": 10, "jitter": 0}, "name": "latency_downstream", "type": "latency", "stream": "downstream", "toxicity": 1.0})
    );
    // Names are unique across both streams.
    let r = f
        .api
        .raw(
            "POST",
            "/proxies/p/toxics",
            Some(br#"{"name":"latency_downstream","type":"latency","stream":"upstream"}"#),
        )
        .unwrap();
    assert_error(&r, 409, "toxic already exists");
    let r = f
        .api
        .raw(
            "POST",
            "/proxies/p/toxics",
            Some(br#"{"type":"latency","stream":"sideways"}"#),
        )
        .unwrap();
    assert_error(
        &r,
        400,
        "stream was invalid, can be either upstream or downstream",
    );
    let r = f
        .api
        .raw("POST", "/proxies/p/toxics", Some(br#"{"type":"explode"}"#))
        .unwrap();
    assert_error(&r, 400, "invalid toxic type");
    let r = f
        .api
        .raw("POST", "/proxies/nope/toxics", Some(br#"{"type":"noop"}"#))
        .unwrap();
    assert_error(&r, 404, "proxy not found");
    // Stream is case-insensitive.
    let t = f.toxic(
        "p",
        json!({"type": "noop", "stream": "UPSTREAM", "toxicity": 0.5}),
    );
    assert_eq!(t["name"], "noop_upstream");
    assert_eq!(t["stream"], "upstream");

    let list = f.api.call("GET", "/proxies/p/toxics", None).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(
        f.api.proxy("p").unwrap()["toxics"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let one = f
        .api
        .call("GET", "/proxies/p/toxics/noop_upstream", None)
        .unwrap();
    assert_eq!(one["toxicity"], 0.5);
    assert_error(
        &f.api.raw("GET", "/proxies/p/toxics/zzz", None).unwrap(),
        404,
        "toxic not found",
    );

    // Update merges attributes and keeps toxicity when omitted; POST and PATCH.
    let r = f
        .api
        .raw(
            "POST",
            "/proxies/p/toxics/latency_downstream",
            Some(br#"{"attributes":{"jitter":3}}"#),
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        body_json(&r)["attributes"],
        json!({"latency": 10, "jitter": 3})
    );
    let u = f
        .api
        .update_toxic("p", "latency_downstream", &json!({"toxicity": 0.25}))
        .unwrap();
    assert_eq!(u["toxicity"], 0.25);
    assert_eq!(u["attributes"]["jitter"], 3);
    let r = f
        .api
        .raw("PATCH", "/proxies/p/toxics/zzz", Some(b"{}"))
        .unwrap();
    assert_error(&r, 404, "toxic not found");

    let r = f
        .api
        .raw("DELETE", "/proxies/p/toxics/noop_upstream", None)
        .unwrap();
    assert_eq!(r.status, 204);
    assert_error(
        &f.api
            .raw("DELETE", "/proxies/p/toxics/noop_upstream", None)
            .unwrap(),
        404,
        "toxic not found",
    );
}

#[test]
fn bad_input_is_400_with_a_message() {
    let f = server();
    f.proxy("p", echo_server());
    let cases: &[(&[u8], &str)] = &[
        (br#"{"type":"bandwidth","attributes":{"rate":0}}"#, "rate"),
        (br#"{"type":"bandwidth","attributes":{"rate":-5}}"#, "rate"),
        (
            br#"{"type":"latency","attributes":{"latency":1000000000000}}"#,
            "latency",
        ),
        (
            br#"{"type":"latency","attributes":{"latency":-1}}"#,
            "latency",
        ),
        (
            br#"{"type":"latency","attributes":{"latency":"slow"}}"#,
            "latency",
        ),
        (br#"{"type":"latency","toxicity":7}"#, "toxicity"),
        (br#"{"type":"latency","attributes":[1]}"#, "attributes"),
        (br#"{"type":"noop","clients":["not-an-ip"]}"#, "clients[0]"),
        (br#"[1,2,3]"#, "object"),
        (b"\xff\xfe", "bad request body"),
        (b"", "bad request body"),
    ];
    for (body, needle) in cases {
        let r = f.api.raw("POST", "/proxies/p/toxics", Some(body)).unwrap();
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(body));
        let msg = body_json(&r)["error"].as_str().unwrap().to_string();
        assert!(msg.contains(needle), "{msg:?} should name {needle}");
    }
    let r = f
        .api
        .raw("PATCH", "/proxies/p", Some(br#"{"enabled":"yes"}"#))
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(body_json(&r)["error"].as_str().unwrap().contains("enabled"));
    // Still serving after all that.
    assert_eq!(f.api.version().unwrap(), "2.12.0");
}

#[test]
fn reset_and_populate() {
    let f = server();
    let up = echo_server();
    let a = f.proxy("a", up);
    f.toxic("a", latency(5));
    f.api.update_proxy("a", &json!({"enabled": false})).unwrap();
    let r = f.api.raw("POST", "/reset", None).unwrap();
    assert_eq!(r.status, 204);
    let p = f.api.proxy("a").unwrap();
    assert_eq!(p["enabled"], true);
    assert_eq!(p["toxics"], json!([]));
    round_trip(&mut connect(a), b"ok");

    // Populate: creates, keeps an unchanged proxy (with its toxics), validates
    // everything first.
    f.toxic("a", latency(5));
    let list = json!([
        {"name": "a", "listen": a.to_string(), "upstream": up.to_string()},
        {"name": "b", "listen": "127.0.0.1:0", "upstream": up.to_string(), "enabled": false},
    ]);
    let r = f
        .api
        .raw("POST", "/populate", Some(list.to_string().as_bytes()))
        .unwrap();
    assert_eq!(r.status, 201);
    let got = body_json(&r);
    let names: Vec<_> = got["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("a"), json!("b")]);
    assert_eq!(
        f.api.proxy("a").unwrap()["toxics"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "unchanged proxy kept its toxics"
    );
    assert_eq!(f.api.proxy("b").unwrap()["enabled"], false);

    let bad = json!([{"name": "c", "upstream": "127.0.0.1:1"}, {"upstream": "127.0.0.1:1"}]);
    let r = f
        .api
        .raw("POST", "/populate", Some(bad.to_string().as_bytes()))
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(
        body_json(&r)["error"],
        "missing required field: name at proxy 2"
    );
    assert!(
        f.api.proxy("c").is_err(),
        "nothing created when validation fails"
    );
    let r = f.api.raw("POST", "/populate", Some(b"[]")).unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(body_json(&r), json!({"proxies": []}));
}
