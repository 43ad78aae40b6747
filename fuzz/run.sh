#!/usr/bin/env bash
# Real fuzzing, bounded in time, for CI: every target runs for
# IBS_FUZZ_SECONDS (default 45) with coverage-guided libFuzzer (cargo-fuzz
# on the nightly toolchain), starting from its committed seed corpus. New
# inputs that add coverage are merged, minimised, into fuzz/corpus/<target>
# (libFuzzer's -merge=1); a crash fails the run and leaves its input in
# fuzz/artifacts/<target>/. Debug assertions and overflow checks are on
# (fuzz/Cargo.toml). Without a nightly toolchain it says so and replays the
# seed corpora instead (fuzz/replay.sh).
set -euo pipefail
cd "$(dirname "$0")"

seconds="${IBS_FUZZ_SECONDS:-45}"
CARGO_FUZZ_VERSION=0.13.2
targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^ibs-fuzz$')

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: NO NIGHTLY TOOLCHAIN - coverage-guided fuzzing is not possible here; replaying the seed corpora only"
    exec bash replay.sh
fi

tools="${CARGO_TARGET_DIR:-$PWD/../target}/tools"
fuzz="$tools/bin/cargo-fuzz"
if [ ! -x "$fuzz" ] || [ "$("$fuzz" --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    echo "installing: cargo-fuzz $CARGO_FUZZ_VERSION (into $tools)"
    cargo install --locked --quiet --root "$tools" --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi
export PATH="$tools/bin:$PATH"

echo "fuzz: building every target (nightly, sanitizer coverage, debug assertions)"
cargo +nightly fuzz build -O -a
total=0
for target in $targets; do
    found="$(mktemp -d)"
    echo "fuzz: $target for ${seconds}s"
    # Seeds are read from the committed corpus; new finds go to a scratch
    # folder and are merged back minimised, so the corpus grows only by
    # inputs that add coverage.
    cargo +nightly fuzz run -O -a "$target" "$found" "corpus/$target" -- \
        -max_total_time="$seconds" -jobs=1 -workers=1 -print_final_stats=1 2>"$found.log" || {
        tail -n 40 "$found.log"
        echo "fuzz: $target FAILED (see fuzz/artifacts/$target/)"
        exit 1
    }
    grep -E "stat::number_of_executed_units|stat::new_units_added" "$found.log" | sed "s/^/fuzz: $target: /" || true
    before=$(find "corpus/$target" -type f | wc -l)
    cargo +nightly fuzz run -O -a "$target" "corpus/$target" "$found" -- -merge=1 >/dev/null 2>&1 || true
    after=$(find "corpus/$target" -type f | wc -l)
    echo "fuzz: $target: corpus $before -> $after inputs"
    rm -rf "$found" "$found.log"
    total=$((total + seconds))
done
echo "fuzz: every target ran ${seconds}s (${total}s in all), no crash"
