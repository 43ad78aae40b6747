#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then runs every test of
# every crate (unit, integration, doc tests). This is the README's test command
# and what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo test --workspace --locked --all-targets
cargo test --workspace --locked --doc
