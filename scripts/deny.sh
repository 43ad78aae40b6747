#!/usr/bin/env bash
# cargo-deny over the workspace (deny.toml says what is allowed and why):
# licenses, bans and sources always; advisories when the RustSec advisory
# database can be had.
#
# cargo-deny (pinned below) is built once into target/tools and reused while
# that binary is there. The advisory database is a git repository on GitHub;
# a machine that cannot reach it (CI's network reaches crates.io but not
# GitHub) cannot check advisories, and that is no fault of the tree: the
# advisories check is then skipped, loudly, instead of failing the run.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DENY_VERSION=0.20.2
tools="${CARGO_TARGET_DIR:-$PWD/target}/tools"
deny="$tools/bin/cargo-deny"
if [ ! -x "$deny" ] || [ "$("$deny" --version 2>/dev/null)" != "cargo-deny $CARGO_DENY_VERSION" ]; then
    echo "installing: cargo-deny $CARGO_DENY_VERSION (into $tools)"
    cargo install --locked --quiet --root "$tools" --version "$CARGO_DENY_VERSION" cargo-deny
fi

checks=(licenses bans sources)
fetch_log="$(mktemp)"
trap 'rm -f "$fetch_log"' EXIT
# Bounded: a network that drops packets to GitHub instead of refusing them
# must not stall the run.
if timeout 120 "$deny" fetch db >"$fetch_log" 2>&1; then
    checks+=(advisories)
    advisories="advisories: checked (database fetched just now)"
else
    advisories="advisories: SKIPPED - the RustSec advisory database cannot be fetched from here (it lives on GitHub):"
    advisories+=$'\n'"$(grep -v '^[[:space:]]*$' "$fetch_log" | tail -n 2 | sed 's/^/    /')"
fi
echo "cargo-deny $CARGO_DENY_VERSION: checking ${checks[*]}"
echo "$advisories"
# Inclusion graphs (hundreds of lines per duplicate-version warning) are left
# out of the log; run `target/tools/bin/cargo-deny check` to see them.
"$deny" --all-features --locked check --hide-inclusion-graph "${checks[@]}"
