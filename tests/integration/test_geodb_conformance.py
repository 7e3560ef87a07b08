"""The GeoDB conformance suite (tests/geodb/conformance.c, built as build/geodb_conformance)
against a real Cassandra node: the very checks `make check` runs against SQLite, so that both
drivers are shown to mean the same thing.

Each run gets a fresh keyspace (the suite creates the schema with geodb_init() and counts on an
empty state) and page_size=50, so that its 250+ group listings, loads, snapshot and backend
removal must follow several pages.  Run once over plain TCP and once over TLS (verified against
the node's CA) when the node has TLS.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

import mchelpers

CONFORMANCE = os.path.join(mchelpers.REPO, "build", "geodb_conformance")
TIMEOUT = 600  # seconds; a run takes ~10 s on one local node


def run_conformance(spec: str) -> None:
    if not os.access(CONFORMANCE, os.X_OK):
        pytest.fail(f"{CONFORMANCE} is missing: run 'make -C {mchelpers.REPO} "
                    f"build/geodb_conformance' first", pytrace=False)
    try:
        r = subprocess.run([CONFORMANCE, spec], capture_output=True, text=True, timeout=TIMEOUT,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) \
            else (e.stdout or "")
        err = (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) \
            else (e.stderr or "")
        pytest.fail(f"geodb_conformance hung for {TIMEOUT} s\n---- stdout\n{out}\n"
                    f"---- stderr\n{err[-20000:]}", pytrace=False)
    output = f"---- stdout\n{r.stdout}\n---- stderr\n{r.stderr[-30000:]}"
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    m = re.fullmatch(r"(\d+) passed, (\d+) failed", last)
    assert m is not None, f"no closing 'N passed, N failed' line (exit {r.returncode})\n{output}"
    assert int(m.group(1)) > 300, f"too few checks ran: {last}\n{output}"
    assert m.group(2) == "0", f"{last}\n{output}"
    assert r.returncode == 0, f"exit {r.returncode}\n{output}"
    print(f"geodb_conformance on Cassandra: {last}")


def test_conformance_plain(cassandra_node):
    run_conformance(cassandra_node.spec(mchelpers.unique_keyspace("conf_plain"), page_size=50))


def test_conformance_tls(cassandra_node):
    # the session's node is always started with TLS (conftest.py): no CA file is a failure
    assert cassandra_node.ca_file is not None, "the session's Cassandra node has no TLS"
    run_conformance(cassandra_node.spec(mchelpers.unique_keyspace("conf_tls"), page_size=50,
                                        tls=True, tls_ca=cassandra_node.ca_file))
