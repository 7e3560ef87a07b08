"""Routing with the Cassandra GeoDB, for real: Cassandra 5.0 nodes run by scripts/cassandra,
Dovecot backends, imaplib clients, the mailcluster CLI.

* two daemons on one keyspace route every user alike, also when both meet a user at once;
* a Cassandra outage: known users keep being routed (from the LocalDB, also across a daemon
  restart), new users get NO [UNAVAILABLE], /api/status says the GeoDB is down; when
  Cassandra is back, new users are served again without restarting the daemon;
* `mailcluster geodb refresh` brings a CLI change to the daemon before localdb_refresh;
* `geodb schema` / `geodb init` (idempotent);
* TLS to Cassandra (verified against the node's CA; a wrong CA is refused).

The session's shared node (fixture cassandra_node) serves every test but the outage one, each
test in its own keyspace; the outage test kills and restarts a node of its own (127.0.0.23).
"""

from __future__ import annotations

import concurrent.futures
import imaplib
import os
import re
import sqlite3
import subprocess
import threading
import time

import pytest

import mchelpers
from mchelpers import (PASSWORD, RawIMAP, backend_of, close_quietly, login_lands_on,
                       unique_keyspace, wait_for)

DAEMON_START = 30  # seconds: a daemon on Cassandra connects and reads the GeoDB first
UNAVAILABLE = b"NO [UNAVAILABLE] Account is temporarily unavailable.\r\n"


# --------------------------------------------------------------------------- helpers


def _login_backend(daemon, user: str, barrier: threading.Barrier | None = None) -> str:
    """Log user in through daemon with imaplib; the name of the backend that answered."""
    if barrier is not None:
        barrier.wait()
    c = daemon.login(user)
    try:
        return backend_of(c)
    finally:
        close_quietly(c)


def _run_all(pool, calls: dict, timeout: float) -> dict:
    """calls: key -> (fn, args); runs them on pool, returns key -> result; any failure or a
    call not done within timeout fails the test (all failures reported together)."""
    futs = {pool.submit(fn, *args): key for key, (fn, args) in calls.items()}
    done, not_done = concurrent.futures.wait(futs, timeout=timeout)
    for f in not_done:
        f.cancel()
    assert not not_done, f"{len(not_done)} of {len(futs)} logins not done in {timeout}s"
    results, errors = {}, []
    for f in done:
        try:
            results[futs[f]] = f.result()
        except Exception as e:  # collect, report together
            errors.append(f"{futs[f]}: {e!r}")
    assert not errors, f"{len(errors)} logins failed, e.g. {sorted(errors)[:5]}"
    return results


def _geodb_state(daemon) -> dict:
    st = daemon.status()
    assert "geodb" in st, f"/api/status has no geodb member: {st}"
    return st["geodb"]


def _assigned_groups(daemon) -> dict:
    """group id -> backend, from `mailcluster group list` (the GeoDB itself)."""
    return {int(g["group"]): g["backend"] for g in daemon.cli_json("group", "list")
            if g["backend"] not in ("", "-")}


def _user_group(daemon, user: str) -> tuple[int, str]:
    """(group, backend or "-") from `mailcluster user status` (which assigns nothing)."""
    st = daemon.cli_json("user", "status", user)[0]
    return int(st["group"]), st["backend"]


def _raw_login(daemon, user: str, timeout: float = 15) -> tuple[bytes, float]:
    """A raw IMAP LOGIN; (the tagged reply line, seconds it took)."""
    c = RawIMAP(daemon.imap_port, timeout=timeout)
    try:
        assert c.greeting.startswith(b"* OK"), c.greeting
        t0 = time.monotonic()
        c.send(f"a1 LOGIN {user} {PASSWORD}\r\n".encode())
        lines = c.read_until_tagged(b"a1")
        return lines[-1], time.monotonic() - t0
    finally:
        c.close()


def _assert_unavailable(daemon, user: str) -> None:
    """user's login is refused with the exact temporary-failure reply, promptly, and the
    daemon lives on; imaplib sees the same refusal."""
    line, _ = _raw_login(daemon, user)
    assert line == b"a1 " + UNAVAILABLE, f"{user}: {line!r}"
    with pytest.raises(imaplib.IMAP4.error, match=r"\[UNAVAILABLE\]"):
        c = daemon.login(user)
        close_quietly(c)  # not reached unless the login wrongly succeeded
    assert daemon.proc.poll() is None, "mailclusterd died"


def _localdb_groups(path: str) -> dict:
    """group id -> backend in a daemon's persisted LocalDB file (the sqlite GeoDB schema);
    {} while the file is missing or being replaced."""
    if not os.path.exists(path):
        return {}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return dict(db.execute("SELECT group_id, backend FROM groups").fetchall())
        finally:
            db.close()
    except sqlite3.Error:
        return {}


def _other_backend(fleet, name: str) -> str:
    return next(b.name for b in fleet.backends if b.name != name)


# --------------------------------------------------------------------------- a. shared keyspace


def test_two_daemons_on_one_keyspace_route_users_alike(cluster, fleet, cassandra_node):
    spec = cassandra_node.spec(unique_keyspace("two"))
    a = cluster(geodb=spec, localdb_refresh="1s", start_timeout=DAEMON_START)
    b = cluster(geodb=spec, setup=False, localdb_refresh="1s", start_timeout=DAEMON_START)
    assert a.imap_port != b.imap_port and a.localdb_path != b.localdb_path
    for d in (a, b):
        g = _geodb_state(d)
        assert g["driver"] == "cassandra" and g["state"] == "ok", g

    users = [f"user{i}" for i in range(1, 81)]        # 40 first seen on a, 40 first on b
    racing = [f"user{i}" for i in range(81, 101)]     # first seen on both at the same moment
    first = {u: (a, b)[i % 2] for i, u in enumerate(users)}
    other = {u: (b, a)[i % 2] for i, u in enumerate(users)}
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        # 1. alternately through a and b, all at once: both daemons assign groups concurrently
        calls = {(u, "first"): (_login_backend, (first[u], u)) for u in users}
        for u in racing:
            barrier = threading.Barrier(2, timeout=30)
            calls[(u, "a")] = (_login_backend, (a, u, barrier))
            calls[(u, "b")] = (_login_backend, (b, u, barrier))
        landed = _run_all(pool, calls, timeout=120)
        # 2. every user of 1. through the other daemon
        landed.update(_run_all(pool, {(u, "other"): (_login_backend, (other[u], u))
                                      for u in users}, timeout=120))
    elapsed = time.monotonic() - t0

    where = {}
    differ = {}
    for u in users:
        where[u] = landed[(u, "first")]
        if landed[(u, "other")] != where[u]:
            differ[u] = (landed[(u, "first")], landed[(u, "other")])
    for u in racing:
        where[u] = landed[(u, "a")]
        if landed[(u, "b")] != where[u]:
            differ[u] = (landed[(u, "a")], landed[(u, "b")])
    assert not differ, f"users routed to different backends by the two daemons: {differ}"
    names = {bk.name for bk in fleet.backends}
    assert set(where.values()) == names, f"users did not spread over the fleet: {where}"

    # The GeoDB (read by the CLI from Cassandra) agrees with where every login landed.
    assigned = _assigned_groups(a)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        groups = dict(zip(where, pool.map(lambda u: _user_group(a, u), where)))
    wrong = {u: (where[u], groups[u], assigned.get(groups[u][0]))
             for u in where
             if assigned.get(groups[u][0]) != where[u] or groups[u][1] != where[u]}
    assert not wrong, f"user -> (landed, user status, group list) disagree: {wrong}"
    assert set(assigned.values()) <= names
    for d in (a, b):
        assert d.proc.poll() is None
        assert _geodb_state(d)["state"] == "ok"
    print(f"{len(landed)} logins through two daemons in {elapsed:.1f}s; "
          f"{len(assigned)} groups assigned")


# --------------------------------------------------------------------------- b. outage

OUTAGE_IP = "127.0.0.23"
OUTAGE_PORT = 19042
OUTAGE_SPARE_IPS = ("127.0.0.123", "127.0.0.133")


@pytest.fixture(scope="module")
def outage_node(tmp_path_factory):
    """A Cassandra node of this module's own, which its test kills and restarts."""
    root = str(tmp_path_factory.mktemp("cassandra-outage"))
    node, error = None, None
    try:
        node = mchelpers.start_cassandra_node(root, OUTAGE_IP, OUTAGE_PORT,
                                              spare_ips=OUTAGE_SPARE_IPS)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        error = str(e)
    if node is None:
        pytest.fail(f"Cassandra for the outage test: {error}", pytrace=False)
    try:
        yield node
    finally:
        node.stop()  # also fine when the test left it killed


def test_cassandra_outage_known_users_routed_new_users_unavailable(cluster, fleet, outage_node,
                                                                  tmp_path):
    spec = outage_node.spec(unique_keyspace("outage"), request_timeout=2000)
    localdb = str(tmp_path / "outage-localdb.sqlite")
    d = cluster(geodb=spec, localdb=localdb, localdb_refresh="1s", start_timeout=DAEMON_START)
    assert _geodb_state(d)["state"] == "ok"

    # Known users: logged in while Cassandra is up, so their groups are assigned.
    known = [f"user{i}" for i in range(1, 25)]
    home = {u: login_lands_on(d, u) for u in known}
    assigned = _assigned_groups(d)
    known_groups = {u: _user_group(d, u) for u in known}
    for u, (g, backend) in known_groups.items():
        assert backend == home[u] and assigned.get(g) == home[u], (u, g, backend, home[u])
    # New users: their hash group has no backend yet (user status assigns nothing).
    new = []
    for i in range(200, 300):
        u = f"user{i}"
        g, backend = _user_group(d, u)
        if g not in assigned:
            assert backend == "-", (u, g, backend)
            new.append(u)
        if len(new) == 6:
            break
    assert len(new) == 6, "not enough users with an unassigned group"
    # The daemon has saved what it routes by to its LocalDB file.
    need = {g: home[u] for u, (g, _) in known_groups.items()}
    wait_for(lambda: all(_localdb_groups(localdb).get(g) == b for g, b in need.items()), 30,
             interval=0.2, message=f"the LocalDB file {localdb} to hold the known groups")

    # ---- Cassandra dies while clients are logging in.
    stop_logins = threading.Event()
    during, failures = [], []

    def log_in_meanwhile():
        i = 0
        while not stop_logins.is_set() and len(during) < 2000:
            u = known[i % len(known)]
            i += 1
            try:
                landed = login_lands_on(d, u)
                during.append(u)
                if landed != home[u]:
                    failures.append(f"{u} landed on {landed}, not {home[u]}")
            except Exception as e:  # collected, asserted below
                failures.append(f"{u}: {e!r}")
    logger = threading.Thread(target=log_in_meanwhile)
    logger.start()
    try:
        wait_for(lambda: len(during) >= 5, 30, interval=0.05,
                 message="logins to be under way before the kill")
        pid = outage_node.pid()
        outage_node.stop(kill=True)
        assert not outage_node.is_answering()
        down = wait_for(lambda: (lambda g: g if g["state"] == "down" else None)(_geodb_state(d)),
                        30, interval=0.2, message="/api/status to report the GeoDB down")
        before_kill = len(during)
        wait_for(lambda: len(during) >= before_kill + 20, 30, interval=0.05,
                 message="logins to go on after the GeoDB went down")
    finally:
        stop_logins.set()
        logger.join(60)
    assert not failures, f"{len(failures)} of {len(during) + len(failures)} logins across the " \
                         f"kill failed, e.g. {failures[:3]}"
    assert down["driver"] == "cassandra" and down.get("error"), down
    print(f"Cassandra pid {pid} killed; {len(during)} logins of known users across the kill, "
          f"none failed; daemon says: {down}")

    # Known users keep logging in, repeatedly, for about 10 s; new users are refused.
    t_end = time.monotonic() + 10
    rounds = 0
    while time.monotonic() < t_end:
        for u in known:
            assert login_lands_on(d, u) == home[u], u
        _assert_unavailable(d, new[rounds % len(new)])
        rounds += 1
    assert rounds >= 2, f"only {rounds} rounds of logins in 10 s"
    for u in new:
        _assert_unavailable(d, u)
    assert _geodb_state(d)["state"] == "down"

    # ---- The daemon restarts while Cassandra is still down: it routes from its LocalDB file.
    d.restart(timeout=DAEMON_START)
    for u in known:
        assert login_lands_on(d, u) == home[u], f"{u} after a restart without Cassandra"
    _assert_unavailable(d, new[0])
    wait_for(lambda: _geodb_state(d)["state"] == "down", 30, interval=0.2,
             message="the restarted daemon to report the GeoDB down")

    # ---- Cassandra comes back: new users are served, without restarting the daemon.
    outage_node.start()
    print(f"Cassandra back after {outage_node.start_seconds:.1f} s")

    def new_user_served():
        line, _ = _raw_login(d, new[0])
        return line.startswith(b"a1 OK")
    wait_for(new_user_served, 60, interval=0.5,
             message="a new user to be served once Cassandra is back")
    landed_new = {u: login_lands_on(d, u) for u in new}
    wait_for(lambda: _geodb_state(d)["state"] == "ok", 60, interval=0.2,
             message="/api/status to report the GeoDB ok again")
    for u in new:  # assigned in Cassandra, where the login went
        g, backend = _user_group(d, u)
        assert backend == landed_new[u], (u, g, backend, landed_new[u])
    for u in known:
        assert login_lands_on(d, u) == home[u], f"{u} after Cassandra came back"
    assert d.proc.poll() is None


# --------------------------------------------------------------------------- c. refresh


def test_geodb_refresh_brings_a_cli_change_before_localdb_refresh(cluster, fleet,
                                                                   cassandra_node):
    d = cluster(geodb=cassandra_node.spec(unique_keyspace("refresh")), localdb_refresh="1h",
                start_timeout=DAEMON_START)
    user = "user7"
    first = login_lands_on(d, user)
    group, _ = _user_group(d, user)
    target = _other_backend(fleet, first)
    r = d.cli("group", "move", "--direct", str(group), target)
    assert r.returncode == 0, r.stderr
    assert _assigned_groups(d)[group] == target
    # The daemon routes from its LocalDB, read from Cassandra every hour only: a stream of
    # logins of known users reads and writes nothing in the GeoDB.
    before = _geodb_state(d)
    for _ in range(20):
        assert login_lands_on(d, user) == first
    after = _geodb_state(d)
    for key in ("refreshes", "refresh_failures", "assignments", "assign_failures"):
        assert after[key] == before[key], (key, before, after)
    assert d.status()["localdb"]["routed"] >= 20

    r = d.cli("geodb", "refresh")
    assert r.returncode == 0, f"geodb refresh: {r.stdout}{r.stderr}"
    assert login_lands_on(d, user) == target

    # And back, through the admin API itself.
    assert d.cli("group", "move", "--direct", str(group), first).returncode == 0
    code, body = d.http("POST", "/api/geodb/refresh")
    assert code == 200, body
    assert login_lands_on(d, user) == first
    assert _geodb_state(d)["state"] == "ok"


def test_geodb_refresh_without_a_daemon_fails_clearly(cluster, cassandra_node):
    d = cluster(geodb=cassandra_node.spec(unique_keyspace("norefresh")), start=False)
    r = d.cli("geodb", "refresh")
    assert r.returncode != 0
    assert "daemon" in r.stderr, r.stderr


# --------------------------------------------------------------------------- d. schema, init


def test_geodb_schema_and_idempotent_init(cluster, cassandra_node):
    ks = unique_keyspace("schema")
    d = cluster(geodb=cassandra_node.spec(ks, local_dc="dc1"), setup=False, start=False)
    r = d.cli("geodb", "schema")
    assert r.returncode == 0, r.stderr
    assert "CREATE KEYSPACE" in r.stdout and "NetworkTopologyStrategy" in r.stdout, r.stdout
    assert ks in r.stdout, r.stdout
    assert re.search(r"CREATE TABLE", r.stdout), r.stdout

    r1 = d.cli("geodb", "init")
    assert r1.returncode == 0, f"{r1.stdout}{r1.stderr}"
    r2 = d.cli("geodb", "init")
    assert r2.returncode == 0, f"second geodb init: {r2.stdout}{r2.stderr}"
    v1 = re.search(r"version (\d+)", r1.stdout + r1.stderr)
    v2 = re.search(r"version (\d+)", r2.stdout + r2.stderr)
    assert v1 and v2, (r1.stdout, r2.stdout)
    assert v1.group(1) == v2.group(1)

    # The keyspace and its tables really are in Cassandra.
    out = cassandra_node.cql(
        f"SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = '{ks}'")
    assert ks in out, out
    tables = cassandra_node.cql(
        f"SELECT table_name FROM system_schema.tables WHERE keyspace_name = '{ks}'")
    assert len(tables.splitlines()) >= 3, tables

    # A third init (setup_geodb runs one) and the usual setup work on it.
    d.setup_geodb()
    sites = d.cli_json("site", "list")
    assert [s["site"] for s in sites] == [mchelpers.SITE]
    assert len(d.cli_json("backend", "list")) == len(d.fleet.backends)


# --------------------------------------------------------------------------- e. TLS


def test_daemon_reaches_cassandra_over_tls(cluster, fleet, cassandra_node, tls_files):
    assert cassandra_node.ca_file and os.path.exists(cassandra_node.ca_file)
    ks = unique_keyspace("tls")
    d = cluster(geodb=cassandra_node.spec(ks, tls="yes", tls_ca=cassandra_node.ca_file),
                start_timeout=DAEMON_START)
    name = login_lands_on(d, "user11")
    assert name in {b.name for b in fleet.backends}
    assert _user_group(d, "user11")[1] == name
    assert _geodb_state(d)["state"] == "ok"

    # A CA that did not sign the node's certificate: refused, with a reason.
    wrong_ca = tls_files[0]  # a self-signed certificate of its own
    bad = cluster(geodb=cassandra_node.spec(ks, tls="yes", tls_ca=wrong_ca), setup=False,
                  start=False)
    r = bad.cli("site", "list")
    assert r.returncode != 0, r.stdout
    assert re.search(r"certificate", r.stderr, re.I), r.stderr
