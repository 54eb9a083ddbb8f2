//! The client against real HTTP servers on 127.0.0.1: a tiny scripted
//! server that answers each connection with the next canned response and
//! hands back what it received.

use plumb_http::{Backoff, Client, Config, Error, Retry};
use plumb_model::Secret;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

/// A request as the server saw it.
#[derive(Debug)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

/// Serves one connection per canned answer, in order, then stops; returns
/// the base URL and the requests received.
fn serve(answers: Vec<String>) -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for answer in answers {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0usize;
            // A request head has a bounded number of lines.
            for _ in 0..100 {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap();
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let _ = tx.send(Seen { head, body });
            let mut stream = stream;
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (base, rx)
}

fn answer(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
        body.len()
    )
}

fn quick_retries(attempts: u32) -> Retry {
    Retry {
        attempts,
        backoff: Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
        },
    }
}

#[test]
fn an_error_answer_keeps_the_url_the_status_and_the_servers_message() {
    let (base, _seen) = serve(vec![
        answer("404 Not Found", "", r#"{"error":"no run matches `abc`"}"#),
        answer("500 Oops", "", "plain words\n"),
    ]);
    let client = Client::new(&Config::new(&base)).unwrap();
    let e = client.get("/api/v1/runs/abc").send().unwrap_err();
    match &e {
        Error::Status {
            url,
            status,
            message,
            ..
        } => {
            assert_eq!(url, &format!("{base}/api/v1/runs/abc"));
            assert_eq!(*status, 404);
            assert_eq!(message, "no run matches `abc`");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        e.to_string(),
        format!("collector {base}/api/v1/runs/abc answered 404: no run matches `abc`")
    );
    let e = client.get("/x").send().unwrap_err();
    assert_eq!(e.message(), Some("plain words"));
    assert!(!e.is_retryable());
}

#[test]
fn the_token_query_and_gzip_body_are_sent() {
    let (base, seen) = serve(vec![answer("200 OK", "X-Answer: yes\r\n", r#"{"n":3}"#)]);
    let client = Client::new(&Config {
        token: Some(Secret::new("tok-123")),
        ..Config::new(&base)
    })
    .unwrap();
    let resp = client
        .post("/ingest")
        .query("text", "a b&c")
        .header("X-Plumb-Node", "n1")
        .bytes("application/x-test", b"hello hello hello".to_vec())
        .gzip()
        .send()
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-answer"), Some("yes"));
    let v: serde_json::Value = resp.json().unwrap();
    assert_eq!(v["n"], 3);
    let s = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        s.head.starts_with("POST /ingest?text=a%20b%26c "),
        "{}",
        s.head
    );
    let head = s.head.to_ascii_lowercase();
    assert!(head.contains("authorization: bearer tok-123"), "{head}");
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(head.contains("x-plumb-node: n1"), "{head}");
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&s.body[..])
        .read_to_string(&mut plain)
        .unwrap();
    assert_eq!(plain, "hello hello hello");
}

#[test]
fn busy_answers_are_retried_and_the_last_one_is_returned() {
    let busy = || answer("503 Busy", "Retry-After: 0\r\n", r#"{"error":"disk full"}"#);
    let (base, seen) = serve(vec![
        busy(),
        answer("502 Bad Gateway", "", ""),
        answer("200 OK", "", "done"),
    ]);
    let client = Client::new(&Config {
        retry: quick_retries(3),
        ..Config::new(&base)
    })
    .unwrap();
    let resp = client.get("/x").send().unwrap();
    assert_eq!(resp.text(), "done");
    assert_eq!(seen.try_iter().count(), 3);

    // Without retries the first busy answer is the error, with its Retry-After.
    let (base, _seen) = serve(vec![answer(
        "429 Too Many",
        "Retry-After: 7\r\n",
        "slow down",
    )]);
    let e = Client::new(&Config::new(&base))
        .unwrap()
        .get("/x")
        .send()
        .unwrap_err();
    assert!(e.is_retryable());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));

    // Attempts run out: the error is the last answer's.
    let (base, seen) = serve(vec![busy(), busy()]);
    let e = Client::new(&Config {
        retry: quick_retries(2),
        ..Config::new(&base)
    })
    .unwrap()
    .get("/x")
    .send()
    .unwrap_err();
    assert_eq!(e.status(), Some(503));
    assert_eq!(e.message(), Some("disk full"));
    assert_eq!(seen.try_iter().count(), 2);
}

#[test]
fn a_refusal_is_not_retried() {
    let (base, seen) = serve(vec![
        answer("401 Unauthorized", "", r#"{"error":"unknown token"}"#),
        answer("200 OK", "", ""),
    ]);
    let client = Client::new(&Config {
        retry: quick_retries(3),
        ..Config::new(&base)
    })
    .unwrap();
    let e = client.get("/x").send().unwrap_err();
    assert_eq!(e.refusal().map(|r| r.status), Some(401));
    assert_eq!(seen.try_iter().count(), 1);
}

#[test]
fn send_any_returns_an_error_status_as_an_answer() {
    let (base, _seen) = serve(vec![answer("409 Conflict", "", r#"{"error":"exists"}"#)]);
    let resp = Client::new(&Config::new(&base))
        .unwrap()
        .put("/p")
        .json(&serde_json::json!({"a": 1}))
        .send_any()
        .unwrap();
    assert_eq!(resp.status, 409);
    assert_eq!(resp.text(), r#"{"error":"exists"}"#);
}

#[test]
fn an_answer_over_the_cap_is_refused() {
    let big = "x".repeat(5000);
    let (base, _seen) = serve(vec![answer("200 OK", "", &big), answer("200 OK", "", &big)]);
    let client = Client::new(&Config {
        max_body: 1000,
        ..Config::new(&base)
    })
    .unwrap();
    let e = client.get("/big").send().unwrap_err();
    assert!(matches!(e, Error::Decode { .. }), "{e:?}");
    assert!(e.to_string().contains("/big"), "{e}");
    // A request may raise the cap.
    assert_eq!(
        client
            .get("/big")
            .max_body(10_000)
            .send()
            .unwrap()
            .body
            .len(),
        5000
    );
}

#[test]
fn a_refused_connection_is_retryable_and_names_the_url() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let client = Client::new(&Config::new(&base).service("webhook")).unwrap();
    let e = client.get("/hook").send().unwrap_err();
    assert!(matches!(e, Error::Transport { connect: true, .. }), "{e:?}");
    assert!(e.is_retryable());
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("cannot reach webhook {base}/hook (cannot connect")),
        "{shown}"
    );
}
