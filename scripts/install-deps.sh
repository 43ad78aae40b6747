#!/usr/bin/env bash
# Installs the system packages the test suite talks to (OpenSSL on the other
# side of every key and PKCS#12 test; Python with cryptography and zstandard
# for the independent archive reader). Idempotent; needs root (or sudo) only
# when something is missing.
set -euo pipefail
packages=(openssl python3 python3-cryptography python3-zstandard)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
