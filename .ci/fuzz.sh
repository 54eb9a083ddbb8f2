#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ briefly (FUZZ_SECONDS each, 12 by
# default: about a minute for all), so the targets stay buildable and a
# regression in a decoder shows up here. Starts from the checked-in corpus
# (fuzz/corpus/<target>, which the stable tests also replay) and writes new
# inputs to the ignored fuzz/work/<target>; a crash leaves its input in
# fuzz/artifacts/<target>/ and fails the script.
#
# Needs a nightly toolchain (cargo-fuzz instruments with -Z flags). Without
# one it says so and exits 0: the corpus replay tests still ran under
# `cargo xtask test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
seconds="${FUZZ_SECONDS:-12}"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: skipped, no nightly toolchain (rustup toolchain install nightly); the corpus replay tests ran on stable"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz (cargo install)"
    cargo install --locked cargo-fuzz
fi

targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^plumb-fuzz$')
cargo +nightly fuzz build -O
for t in $targets; do
    mkdir -p "work/$t"
    echo "fuzz: $t for ${seconds}s"
    log="work/$t.log"
    status=0
    cargo +nightly fuzz run -O "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY|Test unit written)' "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -40 "$log"
        echo "fuzz: $t FAILED (exit $status); the input is in fuzz/artifacts/$t/"
        exit 1
    fi
done
echo "fuzz: all targets ran clean"
