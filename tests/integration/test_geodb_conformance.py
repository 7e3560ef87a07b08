"""The GeoDB conformance suite (tests/geodb/conformance.c, built as build/geodb_conformance)
against a real Cassandra node: the very checks `make check` runs against SQLite, so that both
drivers are shown to mean the same thing.

Each run gets a fresh keyspace (the suite creates the schema with geodb_init() and counts on an
empty state) and page_size=50, so that its 250+ group listings, loads, snapshot and backend
removal must follow several pages.  Run once over plain TCP and once over TLS (verified against
the node's CA) when the node has TLS.

The upgrade run makes a keyspace as schema version 2 left it, holding the conformance suite's
V2_FIXTURE rows, and has `geodb_conformance --upgrade` check that geodb_init() brings it to the
current version with those rows intact (the SQLite run does the same on a file of its own).  A
second one does the same for a keyspace at version 3 as it was before users.hold_until and the
balancing columns and tables (groups.sticky, moved_at, history; group_load; user_backend) were
added to it (`--upgrade-v3`): init must add them to a keyspace already at the current version.
A third does it for a keyspace at version 3 as released, the last before version 4 added several
sites (`--upgrade-v3-full`): groups.failover_site, site_heartbeats, site_reachability,
group_failover and site_force_moves must come with init, the old rows intact.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

import mchelpers

CONFORMANCE = os.path.join(mchelpers.REPO, "build", "geodb_conformance")
TIMEOUT = 600  # seconds; a run takes ~10 s on one local node


def run_conformance(spec: str, *args: str, min_checks: int = 300) -> None:
    if not os.access(CONFORMANCE, os.X_OK):
        pytest.fail(f"{CONFORMANCE} is missing: run 'make -C {mchelpers.REPO} "
                    f"build/geodb_conformance' first", pytrace=False)
    try:
        r = subprocess.run([CONFORMANCE, *args, spec], capture_output=True, text=True, timeout=TIMEOUT,
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
    assert int(m.group(1)) > min_checks, f"too few checks ran: {last}\n{output}"
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


# Schema version 2 as geodb_cassandra.c created it (schema_v2), and the rows of V2_FIXTURE in
# tests/geodb/conformance.c.
V2_KEYSPACE = ("CREATE KEYSPACE {ks} WITH replication = "
               "{{'class': 'SimpleStrategy', 'replication_factor': 1}}")
V2_SCHEMA = [
    "CREATE TABLE {ks}.meta (key text PRIMARY KEY, value text)",
    "CREATE TABLE {ks}.sites (name text PRIMARY KEY, status text, tags text, "
    "load_balancer text, updated_by text, updated_at bigint)",
    "CREATE TABLE {ks}.backends (name text PRIMARY KEY, site text, address text, status text, "
    "load_factor int, tags text, updated_by text, updated_at bigint)",
    "CREATE TABLE {ks}.groups (group_id int PRIMARY KEY, site text, backend text, epoch bigint, "
    "written_by text, written_at bigint)",
    "CREATE TABLE {ks}.users (username text PRIMARY KEY, group_id int, written_by text, "
    "written_at bigint)",
    "CREATE TABLE {ks}.leases (name text PRIMARY KEY, holder text, expires_at bigint)",
    "CREATE TABLE {ks}.health (backend text, observer text, ok boolean, detail text, "
    "observed_at bigint, since bigint, PRIMARY KEY (backend, observer))",
]
V2_ROWS = [
    "INSERT INTO {ks}.sites (name, status, tags, load_balancer, updated_by, updated_at) "
    "VALUES ('dc1', 'online', '', '', 'v2', 1700000000)",
    "INSERT INTO {ks}.backends (name, site, address, status, load_factor, tags, updated_by, "
    "updated_at) VALUES ('b1', 'dc1', '10.9.0.1', 'online', 100, '', 'v2', 1700000000)",
    "INSERT INTO {ks}.backends (name, site, address, status, load_factor, tags, updated_by, "
    "updated_at) VALUES ('b2', 'dc1', '10.9.0.2', 'standby', 100, '', 'v2', 1700000000)",
    "INSERT INTO {ks}.groups (group_id, site, backend, epoch, written_by, written_at) "
    "VALUES (5, 'dc1', 'b1', 3, 'v2', 1700000000)",
    "INSERT INTO {ks}.groups (group_id, site, backend, epoch, written_by, written_at) "
    "VALUES (6, 'dc1', 'b2', 1, 'v2', 1700000000)",
    "INSERT INTO {ks}.users (username, group_id, written_by, written_at) "
    "VALUES ('alice', 5, 'v2', 1700000000)",
    "INSERT INTO {ks}.meta (key, value) VALUES ('group_count', '64')",
    "INSERT INTO {ks}.meta (key, value) VALUES ('schema_version', '2')",
]


def test_conformance_upgrade_from_v2(cassandra_node):
    ks = mchelpers.unique_keyspace("conf_v2")
    for statement in [V2_KEYSPACE] + V2_SCHEMA + V2_ROWS:
        cassandra_node.cql(statement.format(ks=ks))
    run_conformance(cassandra_node.spec(ks, page_size=50), "--upgrade", min_checks=30)


# Version 3 as geodb_cassandra.c first made it, before users.hold_until and the balancing columns
# and tables (V3_EARLY in tests/geodb/conformance.c): version 2's tables with version 3's other
# columns and tables, and V2_FIXTURE's rows recorded as version 3.
V3_EARLY_SCHEMA = V2_SCHEMA + [
    "ALTER TABLE {ks}.backends ADD (mark text, mark_since bigint, mark_reason text)",
    "ALTER TABLE {ks}.groups ADD (alt_backend text, move_to text, move_started bigint, "
    "move_reason text)",
    "CREATE TABLE {ks}.move_acks (group_id int, observer text, epoch bigint, acked_at bigint, "
    "PRIMARY KEY (group_id, observer))",
]
V3_EARLY_ROWS = [r.replace("'schema_version', '2'", "'schema_version', '3'") for r in V2_ROWS]
assert V3_EARLY_ROWS != V2_ROWS


def test_conformance_upgrade_from_early_v3(cassandra_node):
    ks = mchelpers.unique_keyspace("conf_v3")
    for statement in [V2_KEYSPACE] + V3_EARLY_SCHEMA + V3_EARLY_ROWS:
        cassandra_node.cql(statement.format(ks=ks))
    run_conformance(cassandra_node.spec(ks, page_size=50), "--upgrade-v3", min_checks=30)


# Version 3 as released (V3 in tests/geodb/conformance.c): version 3 as geodb_cassandra.c's
# schema_v3 made it, the last before version 4 added several sites, with V2_FIXTURE's rows.
V3_SCHEMA = V3_EARLY_SCHEMA + [
    "ALTER TABLE {ks}.users ADD (hold_until bigint)",
    "ALTER TABLE {ks}.groups ADD (sticky boolean, moved_at bigint, history text)",
    "CREATE TABLE {ks}.group_load (group_id int, observer text, sessions int, logins int, "
    "reported_at bigint, PRIMARY KEY (group_id, observer))",
    "CREATE TABLE {ks}.user_backend (username text PRIMARY KEY, backend text, "
    "recorded_at bigint)",
]


def test_conformance_upgrade_from_v3(cassandra_node):
    ks = mchelpers.unique_keyspace("conf_v3full")
    for statement in [V2_KEYSPACE] + V3_SCHEMA + V3_EARLY_ROWS:
        cassandra_node.cql(statement.format(ks=ks))
    run_conformance(cassandra_node.spec(ks, page_size=50), "--upgrade-v3-full", min_checks=30)
