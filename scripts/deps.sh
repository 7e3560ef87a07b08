#!/usr/bin/env bash
# deps.sh - install, from Debian's packages, whatever the build, tests, demo
# and benchmark need and this machine lacks.  Safe to run again: it only
# calls apt-get when a package is missing.  Needs root (or sudo) for that.
set -euo pipefail

packages=(
	build-essential pkg-config
	libevent-dev libssl-dev libsqlite3-dev sqlite3
	dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd
	dovecot-managesieved dovecot-submissiond
	haproxy curl openssl python3 python3-pytest
	# node_exporter: the tests start their own on a loopback address
	# (tests/integration/test_metrics.py); policy-rc.d below keeps Debian's
	# service on :9100 from starting
	prometheus-node-exporter
	# nft: tests/integration/netcut.py cuts real traffic between two Cassandra
	# data centres on loopback (test_site_split.py); it adds and deletes only a
	# table of its own, never the machine's ruleset
	nftables
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
		missing+=("$p")
	fi
done
# pytest may come from pip rather than Debian: accept either.
if printf '%s\n' "${missing[@]}" | grep -qx python3-pytest && python3 -c 'import pytest' 2>/dev/null; then
	missing=("${missing[@]/python3-pytest}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# Debian's packages would start their own services; we start ours ourselves.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
	$SUDO chmod +x /usr/sbin/policy-rc.d
	trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
