#!/usr/bin/env bash
# The manual pages of `ibs` (ibs.1 and one page per command), generated from
# the same definitions as `ibs --help`, into target/man (or the folder given).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/man}
cargo run --quiet --locked -p ibs-cli -- man --out "$out"
ls "$out"
echo "read one with: man -l $out/ibs-backup.1"
