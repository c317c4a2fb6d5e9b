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
# wrk and nginx (the bench/ scripts' smoke tests); curl, wget, git, nginx and
# apache2 (the interoperability matrix in tests/interop); tmux (perlbal console
# driven in a terminal)
need=""
[ -x /usr/bin/perlbal ] || need="$need perlbal"
[ -x /usr/bin/chromium ] || need="$need chromium"
command -v openssl >/dev/null || need="$need openssl"
command -v strace >/dev/null || need="$need strace"
command -v wrk >/dev/null || need="$need wrk"
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need="$need nginx-light"
command -v curl >/dev/null || need="$need curl"
command -v wget >/dev/null || need="$need wget"
command -v git >/dev/null || need="$need git"
# memcached: Throttle's shared state (tests/plugins/test_throttle_memcached.py)
command -v memcached >/dev/null || [ -x /usr/bin/memcached ] || need="$need memcached"
command -v tmux >/dev/null || need="$need tmux"
# logrotate: rotation with postrotate perlbal reopen-logs (tests/operating/test_signals.py)
command -v logrotate >/dev/null || [ -x /usr/sbin/logrotate ] || need="$need logrotate"
# haproxy: the L4 balancer in front of two instances (tests/operating/test_scale_out.py)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need="$need haproxy"
if [ -n "$need" ] || [ ! -x /usr/sbin/apache2 ]; then
    $SUDO apt-get update -qq
fi
if [ -n "$need" ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null
fi
# optional: where Debian has no apache2, its rows of tests/interop skip with the reason
if [ ! -x /usr/sbin/apache2 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq apache2 >/dev/null 2>&1 \
        || echo "apache2 not installable here: tests/interop skips its rows"
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/pip install -q -e '.[test]' 2>&1 | grep -v -i "warning" || true

echo "== mypy --strict perlbal"
.venv/bin/mypy --strict perlbal

echo "== pytest"
# No retries: a test that fails under load (servers, real clients and Perl
# Perlbal share two cores here) is a bug in the test or the server, fixed there.
.venv/bin/pytest -q -p no:cacheprovider "$@"
