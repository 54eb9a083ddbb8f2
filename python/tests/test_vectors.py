"""Shared test vectors with the Rust crate: see
crates/plumb-checkpoint/tests/vectors/manifest.json. python-* files are
written here (PLUMB_WRITE_VECTORS=1 rewrites them); rust-* files come from
the Rust side. Every file must decode exactly as the manifest says."""

import json
import os

import pytest

from plumb import checkpoint as ck

VECTORS = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates", "plumb-checkpoint", "tests", "vectors"
)
WRITE = bool(os.environ.get("PLUMB_WRITE_VECTORS"))


def manifest():
    with open(os.path.join(VECTORS, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def payload_of(v):
    if "state" in v:
        # The same encoding Checkpointer.save uses.
        return ck._encode("json", v["state"])
    return bytes.fromhex(v["payload_hex"])


def damaged(base, damage):
    out = bytearray(base)
    if "truncate_to" in damage:
        del out[damage["truncate_to"] :]
    elif "xor" in damage:
        at, mask = damage["xor"]
        out[at] ^= mask
    elif "zero_fill" in damage:
        out = bytearray(len(out))
    else:
        raise AssertionError(f"unknown damage {damage}")
    return bytes(out)


def read(name):
    with open(os.path.join(VECTORS, name), "rb") as f:
        return f.read()


@pytest.mark.parametrize("v", manifest()["valid"], ids=lambda v: v["file"])
def test_valid_vector(v):
    if v["producer"] == "python":
        expected = ck.encode_frame(v["seq"], v["time_ns"], v["encoding"], payload_of(v))
        if WRITE:
            with open(os.path.join(VECTORS, v["file"]), "wb") as f:
                f.write(expected)
        assert read(v["file"]) == expected, "the committed vector differs from what this package writes"
    header, payload = ck.decode_frame(read(v["file"]))
    assert (header.seq, header.time_ns, header.encoding) == (v["seq"], v["time_ns"], v["encoding"])
    assert ck.rfc3339(header.time_ns) == v["time"]
    if "state" in v:
        assert json.loads(payload) == v["state"]
    else:
        assert payload == bytes.fromhex(v["payload_hex"])


@pytest.mark.parametrize("v", manifest()["corrupt"], ids=lambda v: v["file"])
def test_corrupt_vector(v):
    if v["base"].startswith("python-"):
        expected = damaged(read(v["base"]), v["damage"])
        if WRITE:
            with open(os.path.join(VECTORS, v["file"]), "wb") as f:
                f.write(expected)
        assert read(v["file"]) == expected
    with pytest.raises(ck.Corrupt) as info:
        ck.decode_frame(read(v["file"]))
    assert info.value.code == v["error"], info.value.message


def test_both_producers_are_present():
    producers = {v["producer"] for v in manifest()["valid"]}
    assert producers == {"rust", "python"}
    bases = {v["base"].split("-")[0] for v in manifest()["corrupt"]}
    assert bases == {"rust", "python"}
