#!/usr/bin/env bash
# Builds every fuzz target and runs it once over its committed seed corpus
# (a regression check that needs no nightly toolchain). For real fuzzing:
#   cargo install cargo-fuzz && cd fuzz && cargo fuzz run <target>
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --locked --bins
for target in $(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^ibs-fuzz$'); do
    echo "fuzz replay: $target"
    ./target/release/"$target" -runs=0 "corpus/$target"
done
