#!/usr/bin/env bash
# The main job end to end on the embedded default (a local directory as the
# share): make a key pair, back up the sample infrastructure state shipped in
# examples/sample-state, list, verify, restore, and compare with the original.
# Installs what the build needs (libsmbclient-dev for the SMB backend) first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --locked -p ibs-cli
ibs=target/release/ibs
work=$(mktemp -d "${TMPDIR:-/tmp}/ibs-quickstart.XXXXXX")
echo "== working in $work"

echo "== ibs keygen"
$ibs keygen --out "$work/keys" --name operator
# The controller's signing key: recovery then refuses backups it did not sign.
$ibs keygen --signing --out "$work/keys" --name controller

sources=()
for dir in examples/sample-state/*/; do
    name=$(basename "$dir")
    sources+=(--source "$name=$dir")
done
# The "share": like a real one, it must exist before backup is enabled.
mkdir -p "$work/share"
echo "== ibs backup"
$ibs backup --location "$work/share" --cert "$work/keys/operator.cer" "${sources[@]}" \
    --sign "$work/keys/controller.sign.key" --fqdn azs.contoso.com --region local --producer-version 1.2408.0

echo "== ibs list"
$ibs list --location "$work/share" --fqdn azs.contoso.com --region local

echo "== ibs verify"
$ibs verify --location "$work/share" --fqdn azs.contoso.com --region local \
    --pfx "$work/keys/operator.pfx" --password-file "$work/keys/operator.password" \
    --trust-signer "$work/keys/controller.sign.pub"

echo "== ibs restore"
$ibs restore --location "$work/share" --fqdn azs.contoso.com --region local \
    --pfx "$work/keys/operator.pfx" --password-file "$work/keys/operator.password" --to "$work/restored" \
    --trust-signer "$work/keys/controller.sign.pub"

echo "== compare"
for dir in examples/sample-state/*/; do
    name=$(basename "$dir")
    diff -r "$dir" "$work/restored/$name"
done
echo "quickstart: restored data is identical to the original ($work)"
