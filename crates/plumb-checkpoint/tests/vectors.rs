//! Shared test vectors: files written by the Rust side (rust-*) and by the
//! Python package (python-*) are all read here, and must decode exactly as
//! tests/vectors/manifest.json says. python/tests/test_vectors.py does the
//! same from the other side.
//!
//! `PLUMB_WRITE_VECTORS=1` rewrites the rust-* files; without it the test
//! checks that the committed rust-* files are byte for byte what this crate
//! writes today, so a format change cannot slip through unnoticed.

use plumb_checkpoint::{decode_frame, encode_frame, rfc3339};
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// The Rust side serializes its JSON vector from this struct, not from a
/// `serde_json::Value`, so the byte order of keys does not depend on whether
/// some other crate in the build turned on serde_json's `preserve_order`.
#[derive(Serialize)]
struct VectorState {
    step: u64,
    loss: f64,
    name: String,
    items: Vec<i64>,
    nested: Nested,
}

#[derive(Serialize)]
struct Nested {
    a: Option<i64>,
    b: bool,
}

fn typed(state: &Value) -> VectorState {
    VectorState {
        step: state["step"].as_u64().unwrap(),
        loss: state["loss"].as_f64().unwrap(),
        name: state["name"].as_str().unwrap().to_string(),
        items: state["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect(),
        nested: Nested {
            a: state["nested"]["a"].as_i64(),
            b: state["nested"]["b"].as_bool().unwrap(),
        },
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The payload bytes this side writes for a valid vector.
fn payload_of(v: &Value) -> Vec<u8> {
    match v.get("state") {
        Some(state) => serde_json::to_vec(&typed(state)).unwrap(),
        None => hex(v["payload_hex"].as_str().unwrap()),
    }
}

fn damaged(base: &[u8], damage: &Value) -> Vec<u8> {
    let mut out = base.to_vec();
    if let Some(n) = damage.get("truncate_to") {
        out.truncate(n.as_u64().unwrap() as usize);
    } else if let Some(xor) = damage.get("xor") {
        let at = xor[0].as_u64().unwrap() as usize;
        out[at] ^= xor[1].as_u64().unwrap() as u8;
    } else if damage.get("zero_fill").is_some() {
        out.fill(0);
    } else {
        panic!("unknown damage {damage}");
    }
    out
}

#[test]
fn shared_vectors_decode_as_the_manifest_says_in_both_directions() {
    let dir = vectors_dir();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let write = std::env::var_os("PLUMB_WRITE_VECTORS").is_some();
    let mut checked = [0usize; 2]; // [rust-written, python-written]

    for v in manifest["valid"].as_array().unwrap() {
        let file = v["file"].as_str().unwrap();
        let ours = v["producer"] == "rust";
        let (seq, time_ns) = (v["seq"].as_u64().unwrap(), v["time_ns"].as_i64().unwrap());
        let encoding = v["encoding"].as_str().unwrap();
        if ours {
            let bytes = encode_frame(seq, time_ns, encoding, &payload_of(v)).unwrap();
            if write {
                std::fs::write(dir.join(file), &bytes).unwrap();
            }
            assert_eq!(
                std::fs::read(dir.join(file)).unwrap(),
                bytes,
                "{file}: the committed vector differs from what this crate writes"
            );
        }
        let bytes = std::fs::read(dir.join(file))
            .unwrap_or_else(|e| panic!("{file}: {e} (write it with PLUMB_WRITE_VECTORS=1)"));
        let (header, payload) =
            decode_frame(&bytes).unwrap_or_else(|e| panic!("{file}: valid vector refused: {e}"));
        assert_eq!(
            (header.seq, header.time_ns, header.encoding.as_str()),
            (seq, time_ns, encoding),
            "{file}"
        );
        assert_eq!(
            rfc3339(header.time_ns),
            v["time"].as_str().unwrap(),
            "{file}"
        );
        match v.get("state") {
            Some(state) => {
                let decoded: Value = serde_json::from_slice(payload).unwrap();
                assert_eq!(&decoded, state, "{file}");
            }
            None => assert_eq!(payload, payload_of(v), "{file}"),
        }
        checked[usize::from(!ours)] += 1;
    }

    for v in manifest["corrupt"].as_array().unwrap() {
        let file = v["file"].as_str().unwrap();
        let base = v["base"].as_str().unwrap();
        if base.starts_with("rust-") {
            let bytes = damaged(&std::fs::read(dir.join(base)).unwrap(), &v["damage"]);
            if write {
                std::fs::write(dir.join(file), &bytes).unwrap();
            }
            assert_eq!(std::fs::read(dir.join(file)).unwrap(), bytes, "{file}");
        }
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let err = decode_frame(&bytes).expect_err(file);
        assert_eq!(err.code(), v["error"].as_str().unwrap(), "{file}: {err}");
        checked[usize::from(!base.starts_with("rust-"))] += 1;
    }
    // Both directions are exercised: files from each side were read here.
    assert!(
        checked[0] >= 5 && checked[1] >= 5,
        "vectors checked: {checked:?}"
    );
}
