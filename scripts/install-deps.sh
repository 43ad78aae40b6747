#!/usr/bin/env bash
# Installs the system packages the test suite talks to (OpenSSL on the other
# side of every key and PKCS#12 test; Python with cryptography and zstandard
# for the independent archive reader; Samba, smbclient and libsmbclient for
# the SMB backend and its tests; Node.js and Azurite, the Azure Storage
# emulator, for the object-store backend's tests). Idempotent; needs root (or
# sudo) only when something is missing.
set -euo pipefail
packages=(openssl python3 python3-cryptography python3-zstandard samba smbclient libsmbclient-dev pkg-config)
# Node.js: the machine's own if it has one, else Debian's.
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing: ${missing[*]}"
    $sudo apt-get update -qq
    # Packages must not start system services (Samba's smbd would listen on
    # every interface): tests start their own servers on loopback.
    guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
        $sudo chmod +x /usr/sbin/policy-rc.d
        guard=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
    [ -z "$guard" ] || $sudo rm -f /usr/sbin/policy-rc.d
fi

# Azurite, pinned by tools/azurite/package-lock.json, into tools/azurite/node_modules.
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -x "$root/tools/azurite/node_modules/.bin/azurite-blob" ]; then
    echo "installing: azurite (npm)"
    npm ci --prefix "$root/tools/azurite" --no-audit --no-fund --loglevel=error
fi

# moto's S3 server, pinned by tools/moto/constraints.txt, in tools/moto/.venv.
if [ ! -x "$root/tools/moto/.venv/bin/moto_server" ]; then
    echo "installing: moto[s3,server] (pip, in tools/moto/.venv)"
    python=python3
    if ! "$python" -m venv --help >/dev/null 2>&1; then
        sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv
    fi
    rm -rf "$root/tools/moto/.venv"
    "$python" -m venv "$root/tools/moto/.venv"
    "$root/tools/moto/.venv/bin/pip" install -q --disable-pip-version-check \
        -r "$root/tools/moto/requirements.txt" -c "$root/tools/moto/constraints.txt"
fi
