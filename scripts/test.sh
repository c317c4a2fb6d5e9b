#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine, then run them all:
# Debian's perlbal (Perl Perlbal 1.80, the reference for differential tests),
# a virtualenv with our package and its test tools, mypy --strict, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
# Debian packages the tests use: perlbal (the reference), chromium (web UI
# test), openssl (test certificates), strace (what Perl's upload tracker sends),
# wrk and nginx (the bench/ scripts' smoke tests)
need=""
[ -x /usr/bin/perlbal ] || need="$need perlbal"
[ -x /usr/bin/chromium ] || need="$need chromium"
command -v openssl >/dev/null || need="$need openssl"
command -v strace >/dev/null || need="$need strace"
command -v wrk >/dev/null || need="$need wrk"
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need="$need nginx-light"
if [ -n "$need" ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/pip install -q -e '.[test]' 2>&1 | grep -v -i "warning" || true

echo "== mypy --strict perlbal"
.venv/bin/mypy --strict perlbal

echo "== pytest"
.venv/bin/pytest -q -p no:cacheprovider "$@"
