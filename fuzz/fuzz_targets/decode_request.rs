//! Feeds arbitrary bytes to every admin API request decoder. A decoder may
//! refuse input, always with a 4xx and a message; it must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plumb_proxy::model;

fuzz_target!(|data: &[u8]| {
    let checks = [
        model::decode_proxy_create(data).err(),
        model::decode_proxy_update(data).err(),
        model::decode_toxic_create(data).err(),
        model::decode_toxic_update(data).err(),
        model::decode_populate(data).err(),
    ];
    for e in checks.into_iter().flatten() {
        assert!((400..500).contains(&e.status), "{e:?}");
        assert!(!e.message.is_empty());
    }
    // Whatever decodes must encode and decode again to the same toxic.
    if let Ok(t) = model::decode_toxic_create(data) {
        let again = model::decode_toxic_create(t.to_json().to_string().as_bytes())
            .expect("a decoded toxic re-decodes");
        assert_eq!(again, t);
    }
});
