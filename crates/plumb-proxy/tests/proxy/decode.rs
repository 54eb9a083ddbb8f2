//! The request decoders never panic, whatever the bytes, and every refusal
//! is a 4xx with a message. The same decoders are the cargo-fuzz target in
//! fuzz/.

use plumb_proxy::model;
use proptest::prelude::*;
use serde_json::{Value, json};

fn check(r: Result<(), model::ApiError>) {
    if let Err(e) = r {
        assert!((400..500).contains(&e.status), "{e:?}");
        assert!(!e.message.is_empty());
    }
}

fn all(bytes: &[u8]) {
    check(model::decode_proxy_create(bytes).map(|_| ()));
    check(model::decode_proxy_update(bytes).map(|_| ()));
    check(model::decode_toxic_create(bytes).map(|_| ()));
    check(model::decode_toxic_update(bytes).map(|_| ()));
    check(model::decode_populate(bytes).map(|_| ()));
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop_oneof![
            Just("latency".to_string()),
            Just("bandwidth".to_string()),
            Just("upstream".to_string()),
            Just("127.0.0.1:0".to_string()),
            "[a-z_]{0,12}",
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("name".to_string()),
                        Just("type".to_string()),
                        Just("stream".to_string()),
                        Just("toxicity".to_string()),
                        Just("attributes".to_string()),
                        Just("latency".to_string()),
                        Just("rate".to_string()),
                        Just("upstream".to_string()),
                        Just("listen".to_string()),
                        Just("enabled".to_string()),
                        Just("toxics".to_string()),
                        Just("clients".to_string()),
                        "[a-z]{1,6}",
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        all(&bytes);
    }

    #[test]
    fn random_json_never_panics(v in arb_json()) {
        all(v.to_string().as_bytes());
    }

    #[test]
    fn decoded_toxics_re_decode_the_same(
        kind in prop::sample::select(model::TOXIC_TYPES),
        stream in prop::sample::select(vec!["upstream", "downstream", "UpStream"]),
        attrs in prop::collection::btree_map(
            prop::sample::select(vec!["latency", "jitter", "rate", "delay", "timeout", "bytes", "average_size", "size_variation", "interval", "duration", "per_mille"]),
            0i64..2000,
            0..4,
        ),
        clients in prop::option::of(prop::collection::vec("(10|127|192)\\.[0-9]{1,2}\\.0\\.[0-9]{1,2}(/[0-9]{1,2})?", 0..3)),
    ) {
        let mut body = json!({"type": kind, "stream": stream, "attributes": attrs});
        if let Some(c) = clients {
            body["clients"] = json!(c);
        }
        if let Ok(t) = model::decode_toxic_create(body.to_string().as_bytes()) {
            let again = model::decode_toxic_create(t.to_json().to_string().as_bytes()).unwrap();
            prop_assert_eq!(again, t);
        }
    }

    #[test]
    fn toxic_attributes_round_trip(latency in 0i64..86_400_000, jitter in 0i64..1000, tox in 0.0f64..=1.0) {
        let body = json!({"type": "latency", "toxicity": tox, "attributes": {"latency": latency, "jitter": jitter}});
        let t = model::decode_toxic_create(body.to_string().as_bytes()).unwrap();
        let shown = t.to_json();
        prop_assert_eq!(&shown["attributes"], &json!({"latency": latency, "jitter": jitter}));
        let again = model::decode_toxic_create(shown.to_string().as_bytes()).unwrap();
        prop_assert_eq!(again, t);
    }
}
