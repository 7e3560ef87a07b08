"""The Cassandra GeoDB over two data centres, for real: two Cassandra 5.0 nodes started by
`scripts/cassandra start-two` as dc1 (127.0.0.31) and dc2 (127.0.0.32), the session's Dovecot
fleet, imaplib clients, the mailcluster CLI and daemons.

* `mailcluster geodb init` without replication= finds both data centres (NetworkTopologyStrategy
  with dc1 and dc2), with or without local_dc, and returns once both nodes have the whole
  schema; a second init changes nothing ("up to date").
* Daemons with local_dc=dc2 and local_dc=dc1 each log their own node as local and the other as
  remote, send their requests to their own data centre only (from the very first one, even
  when the remote node's handshake finishes first), and route every user alike, whichever
  daemon met the user first and also when both meet a user at the same moment (a conditional
  insert that lost a Paxos race across the data centres is sent again, not failed).
* dc1 dies (its node SIGKILLed): a daemon with local_dc=dc2, consistency=local_quorum and
  serial_consistency=local_serial goes on: known users are routed, new groups are assigned,
  its GeoDB state stays "ok".  The same daemon with serial_consistency=serial (the default)
  routes known users but cannot assign a new group (Paxos at SERIAL needs a quorum of all
  replicas: 2 of 2 here) and answers NO [UNAVAILABLE].  A daemon whose own data centre died
  (local_dc=dc1) goes over to dc2 and keeps routing.  When dc1 is back, the assignments made
  without it reach it (hinted handoff) and every daemon still agrees.

Two things this cluster needs that a one-node cluster does not (learned here):

* system_auth must be replicated to both data centres.  A fresh cluster keeps it with
  SimpleStrategy, replication_factor 1, i.e. on one node: CREATE KEYSPACE / CREATE TABLE
  through the dc2 node then fail with "unavailable at LOCAL_ONE: 1 replicas required,
  0 alive" (the node grants the creator permissions on the new object in system_auth), and
  with the dc1 node dead nobody can log in.  The fixture sets system_auth to
  NetworkTopologyStrategy {dc1: 1, dc2: 1} and creates roles of its own, written to both
  data centres.  (After the ALTER, the dc2 node has no row for the built-in superuser
  "cassandra": the fixture uses it on the dc1 node only, before any node is stopped.)
* serial_consistency=local_serial only serializes conditional writes within one data centre.
  Here it is safe to mix the dc2 daemon's LOCAL_SERIAL with the dc1 daemon's SERIAL: with one
  replica per data centre every SERIAL quorum (2 of 2) contains dc2's replica.  LOCAL_SERIAL
  in BOTH data centres is not: two proxies meeting a new group at the same moment can both be
  told "applied" with different backends (measured with the CLI: 1 of 60 racing pairs).

The daemons connect to every backend directly (`site_direct_backends = yes`: one flat
network): these tests are about the GeoDB across data centres, not about routing through
another site's load balancer (test_sites.py).

Every wait is bounded; only 127.0.0.31/32 (CQL port 19044, storage port 7000) and the
daemons' own loopback ports are used; the nodes are stopped by the script (by their PID files)
at the end of the module, also when a test left one killed.
"""

from __future__ import annotations

import concurrent.futures
import imaplib
import json
import os
import re
import subprocess
import threading
import time

import pytest

import mchelpers
from mchelpers import (PASSWORD, RawIMAP, backend_of, close_quietly, unique_keyspace,
                       wait_for)

IP = {1: "127.0.0.31", 2: "127.0.0.32"}
DC = {1: "dc1", 2: "dc2"}
CQL_PORT = 19044  # not the session node's 19042
HEAP = "512M"
START_TIMEOUT = 240  # scripts/cassandra --timeout (start-two takes ~20-25 s, a restart ~8 s)
MIN_AVAILABLE_MB = 2500  # two nodes with a 512M heap: ~0.9 GB RSS each

# Roles of our own, created once system_auth lives in both data centres; one per kind of
# client so that system_views.clients tells whose connections a node serves.
ROLES = {"any": ("mc_twodc_any", "any_pw"), "dc1": ("mc_twodc_dc1", "dc1_pw"),
         "dc2": ("mc_twodc_dc2", "dc2_pw")}

DAEMON_START = 30
# What a connection's handshake costs in system_views.clients.request_count: STARTUP,
# AUTH_RESPONSE and the client's "SELECT data_center FROM system.local" (Cassandra 5.0.9).
HANDSHAKE_REQUESTS = 3
UNAVAILABLE = b"NO [UNAVAILABLE] Account is temporarily unavailable.\r\n"
NTS = "org.apache.cassandra.locator.NetworkTopologyStrategy"


# --------------------------------------------------------------------------- the two nodes


class TwoDC:
    """Two nodes of one cluster, DIR/node1 (dc1, IP[1]) and DIR/node2 (dc2, IP[2]), both on
    CQL_PORT, run by scripts/cassandra."""

    def __init__(self, directory: str):
        self.dir = directory
        self.port = CQL_PORT
        self.start_seconds: float | None = None

    def node_dir(self, n: int) -> str:
        return os.path.join(self.dir, f"node{n}")

    @staticmethod
    def _script(*args: str, timeout: float) -> subprocess.CompletedProcess:
        return mchelpers.cassandra_run(*args, timeout=timeout)

    def _check(self, r: subprocess.CompletedProcess, what: str) -> None:
        mchelpers.cassandra_check(r, what, self.dir)

    def start_two(self) -> None:
        t0 = time.monotonic()
        r = self._script("start-two", "--dir", self.dir, "--ip1", IP[1], "--ip2", IP[2],
                         "--cql-port", str(self.port), "--heap", HEAP, "--auth",
                         "--timeout", str(START_TIMEOUT), timeout=2 * START_TIMEOUT + 120)
        self._check(r, "start-two")
        self.start_seconds = time.monotonic() - t0

    def stop_two(self) -> None:
        r = self._script("stop-two", "--dir", self.dir, "--timeout", "60", timeout=200)
        self._check(r, "stop-two")

    def stop_node(self, n: int, kill: bool = False) -> None:
        args = ["stop", "--dir", self.node_dir(n), "--timeout", "60"] + (["--kill"] if kill else [])
        self._check(self._script(*args, timeout=120), " ".join(args))

    def start_node(self, n: int) -> float:
        """Start one node again as start-two made it (seeded by node 1); seconds it took."""
        t0 = time.monotonic()
        args = ["start", "--dir", self.node_dir(n), "--ip", IP[n], "--cql-port", str(self.port),
                "--dc", DC[n], "--rack", "rack1", "--seeds", IP[1], "--heap", HEAP, "--auth",
                "--timeout", str(START_TIMEOUT)]
        self._check(self._script(*args, timeout=START_TIMEOUT + 60), " ".join(args))
        return time.monotonic() - t0

    def answering(self, n: int) -> bool:
        return mchelpers.port_accepts(IP[n], self.port, 0.5)

    def cql(self, n: int, statement: str, role: str | None = None, timeout: float = 30) -> str:
        """One statement on node n with the script's client, as the superuser cassandra (only
        while both nodes are up) or as one of ROLES."""
        user, password = ROLES[role] if role else (mchelpers.CASSANDRA_USER,
                                                    mchelpers.CASSANDRA_PASSWORD)
        r = self._script("cql", "--host", IP[n], "--port", str(self.port), "--user", user,
                         "--password", password, statement, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"CQL on {IP[n]} as {user}: {statement!r}: {r.stderr.strip()}")
        return r.stdout

    def rows(self, n: int, statement: str, role: str | None = None) -> list[dict]:
        lines = self.cql(n, statement, role).splitlines()
        if not lines:
            return []
        header = lines[0].split("\t")
        return [dict(zip(header, line.split("\t"))) for line in lines[1:]]

    def replication(self, n: int, keyspace: str, role: str = "any") -> dict:
        """The keyspace's replication map as node n's system_schema has it ({} if none)."""
        rows = self.rows(n, "SELECT JSON replication FROM system_schema.keyspaces WHERE "
                            f"keyspace_name = '{keyspace}'", role)
        return json.loads(rows[0]["[json]"])["replication"] if rows else {}

    def client_requests(self, n: int, role: str) -> dict:
        """Requests node n has served on each open client connection of role, by the
        connection's (address, port) (asked as another role, so that the asking connection
        is not counted)."""
        user = ROLES[role][0]
        return {(r["address"], r["port"]): int(r["request_count"]) for r in
                self.rows(n, "SELECT username, address, port, request_count "
                             "FROM system_views.clients", "any")
                if r["username"] == user}

    def spec(self, keyspace: str, role: str, hosts: tuple = (1, 2), **extra) -> str:
        user, password = ROLES[role]
        fields = {"hosts": ",".join(IP[n] for n in hosts), "port": str(self.port),
                  "keyspace": keyspace, "username": user, "password": password,
                  "page_size": str(mchelpers.CASSANDRA_PAGE_SIZE)}
        fields.update({k: str(v) for k, v in extra.items()})
        return "cassandra:" + ";".join(f"{k}={v}" for k, v in fields.items())

    def setup_auth(self) -> None:
        """system_auth in both data centres, and ROLES (superusers, so that no permission
        reads are needed) written to both."""
        mchelpers.two_dc_roles(lambda st: self.cql(1, st), self.rows, ROLES)



@pytest.fixture(scope="module")
def two_dc(tmp_path_factory):
    """Two Cassandra nodes as two data centres, this module's own.  Failing to start them
    FAILS the tests (never a skip): Cassandra is part of the suite."""
    avail = mchelpers.mem_available_mb()
    if avail is not None and avail < MIN_AVAILABLE_MB:
        pytest.fail(f"two Cassandra nodes need about 2 GB of memory; only {avail} MB "
                    f"available", pytrace=False)
    busy = [IP[n] for n in (1, 2) if not mchelpers.cassandra_address_free(IP[n], CQL_PORT)]
    if busy:
        pytest.fail(f"CQL port {CQL_PORT} or storage port 7000 already in use on {busy} (a "
                    f"stray node? 'ps -ef | grep CassandraDaemon')", pytrace=False)
    r = mchelpers.cassandra_script("fetch", timeout=mchelpers.CASSANDRA_FETCH_TIMEOUT)
    if r.returncode != 0:
        pytest.fail(f"scripts/cassandra fetch failed; run 'make deps' (Java 17 + Maven)\n"
                    f"{r.stdout[-3000:]}{r.stderr[-5000:]}", pytrace=False)
    c = TwoDC(str(tmp_path_factory.mktemp("cassandra-two-dc")))
    try:
        c.start_two()
        c.setup_auth()
    except (RuntimeError, AssertionError) as e:
        try:
            c.stop_two()  # start-two can leave node 1 running when node 2 fails
        except RuntimeError as stop_error:
            e = f"{e}\n(and stopping them: {stop_error})"
        pytest.fail(f"two Cassandra data centres on {IP[1]}/{IP[2]}:{CQL_PORT}: {e}",
                    pytrace=False)
    print(f"\ntwo_dc: {IP[1]} (dc1) + {IP[2]} (dc2) on port {CQL_PORT}, up in "
          f"{c.start_seconds:.1f} s, dir {c.dir}")
    try:
        yield c
    finally:
        c.stop_two()


# --------------------------------------------------------------------------- helpers


def _login_backend(daemon, user: str, barrier: threading.Barrier | None = None) -> str:
    if barrier is not None:
        barrier.wait()
    c = daemon.login(user)
    try:
        return backend_of(c)
    finally:
        close_quietly(c)


def _try_login_backend(daemon, user: str) -> str | None:
    """The backend user lands on, or None if the login is refused."""
    try:
        return _login_backend(daemon, user)
    except imaplib.IMAP4.error:
        return None


def _run_all(pool, calls: dict, timeout: float) -> dict:
    """calls: key -> (fn, args); key -> result; any failure or a call not done in time fails."""
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


def _raw_login(daemon, user: str, timeout: float = 15) -> tuple[bytes, float]:
    """A raw IMAP LOGIN: (the tagged reply line, seconds it took)."""
    c = RawIMAP(daemon.imap_port, timeout=timeout)
    try:
        assert c.greeting.startswith(b"* OK"), c.greeting
        t0 = time.monotonic()
        c.send(f"a1 LOGIN {user} {PASSWORD}\r\n".encode())
        lines = c.read_until_tagged(b"a1")
        return lines[-1], time.monotonic() - t0
    finally:
        c.close()


def _geodb_state(daemon) -> dict:
    st = daemon.status()
    assert "geodb" in st, f"/api/status has no geodb member: {st}"
    return st["geodb"]


def _assigned_groups(daemon) -> dict:
    """group -> backend, as `mailcluster group list` with this daemon's config reads it."""
    return {int(g["group"]): g["backend"] for g in daemon.cli_json("group", "list")
            if g["backend"] not in ("", "-")}


def _user_group(daemon, user: str) -> tuple[int, str]:
    """(group, backend or "-") from `mailcluster user status` (assigns nothing)."""
    st = daemon.cli_json("user", "status", user)[0]
    return int(st["group"]), st["backend"]


def _setup_two_sites(d, fleet) -> dict:
    """geodb init, then mailcluster sites dc1 (the first backend) and dc2 (the others), all
    online.  Returns site -> backend names."""
    r = d.cli("geodb", "init")
    assert r.returncode == 0, f"geodb init: {r.stdout}{r.stderr}"
    sites = {"dc1": [fleet.backends[0]], "dc2": list(fleet.backends[1:])}
    for site, backends in sites.items():
        steps = [("site", "add", site)]
        steps += [("backend", "add", "--site", site, b.name, b.ip) for b in backends]
        steps += [("backend", "update", "--status", "online", b.name) for b in backends]
        for args in steps:
            r = d.cli(*args)
            assert r.returncode == 0, f"mailcluster {' '.join(args)}: {r.stdout}{r.stderr}"
    return {site: {b.name for b in backends} for site, backends in sites.items()}


def _cql_up(daemon, n: int, local: bool) -> bool:
    pattern = (rf"event=cql_up host={re.escape(IP[n])}:{CQL_PORT} dc={DC[n]} "
               rf"local={'yes' if local else 'no'}\b")
    return re.search(pattern, daemon.log_text()) is not None


def _wait_cql_up(daemon, local_n: int, remote_n: int) -> None:
    wait_for(lambda: _cql_up(daemon, local_n, True) and _cql_up(daemon, remote_n, False), 20,
             interval=0.2, message=f"{daemon.name} to log {IP[local_n]} up as local and "
                                   f"{IP[remote_n]} up as remote")
    log = daemon.log_text()
    # never the other way round
    assert not _cql_up(daemon, local_n, False) and not _cql_up(daemon, remote_n, True), \
        "\n".join(line for line in log.splitlines() if "cql_" in line)


def _new_users(daemon, count: int, start: int = 200, avoid_groups: set = frozenset()) -> list:
    """count users (from user<start> on) whose hash groups have no backend yet, each in a
    group of its own."""
    assigned = _assigned_groups(daemon)
    users, groups = [], set(avoid_groups)
    for i in range(start, 301):
        u = f"user{i}"
        g, backend = _user_group(daemon, u)
        if g in assigned or g in groups:
            continue
        assert backend == "-", (u, g, backend)
        users.append(u)
        groups.add(g)
        if len(users) == count:
            return users
    raise AssertionError(f"only {len(users)} users with an unassigned group of their own")


# --------------------------------------------------------------------------- 1. init


def test_geodb_init_discovers_both_data_centres(two_dc, cluster):
    """No replication= in the spec: init reads system.local/system.peers and creates the
    keyspace with every data centre (min(3, its nodes) replicas: 1 each), waits until both
    nodes have the schema, and a second init changes nothing.  Without local_dc (the CLI
    takes the nodes in turn: the answers to system.local and system.peers come from
    different nodes), with the hosts in both orders, and through dc2 only."""
    expected = {"class": NTS, "dc1": "1", "dc2": "1"}
    for hosts, local_dc in (((1, 2), None), ((2, 1), None), ((1, 2), None), ((1, 2), "dc2")):
        ks = unique_keyspace("twodc_init")
        extra = {"local_dc": local_dc} if local_dc else {}
        d = cluster(geodb=two_dc.spec(ks, "any", hosts=hosts, **extra), setup=False,
                    start=False)
        assert "replication=" not in d.geodb and IP[1] in d.geodb and IP[2] in d.geodb
        how = f"hosts {hosts}, local_dc {local_dc}"

        r1 = d.cli("geodb", "init")
        assert r1.returncode == 0, f"geodb init ({how}): {r1.stdout}{r1.stderr}"
        assert re.search(r"schema version \d+ created", r1.stdout), r1.stdout
        tables = {}
        for n in (1, 2):  # both data centres' schema has it all once init is done
            assert two_dc.replication(n, ks) == expected, (n, how)
            tables[n] = sorted(r["table_name"] for r in two_dc.rows(
                n, f"SELECT table_name FROM system_schema.tables WHERE keyspace_name = '{ks}'",
                "any"))
        assert len(tables[1]) >= 3 and tables[1] == tables[2], (how, tables)

        r2 = d.cli("geodb", "init")
        assert r2.returncode == 0, f"second geodb init ({how}): {r2.stdout}{r2.stderr}"
        assert "up to date" in r2.stdout, r2.stdout
        v1 = re.search(r"version (\d+)", r1.stdout).group(1)
        v2 = re.search(r"version (\d+)", r2.stdout).group(1)
        assert v1 == v2, (r1.stdout, r2.stdout)
        for n in (1, 2):
            assert two_dc.replication(n, ks) == expected, (n, how)
        # and it is usable
        assert d.cli_json("site", "list") == []


# --------------------------------------------------------------------------- 2. two daemons


def test_daemons_in_two_dcs_use_their_own_and_agree(two_dc, cluster, fleet):
    ks = unique_keyspace("twodc_agree")
    # a: a proxy of site dc2 that must be able to work with dc2 alone
    a = cluster(geodb=two_dc.spec(ks, "dc2", local_dc="dc2", consistency="local_quorum",
                                  serial_consistency="local_serial"),
                setup=False, start=False, site="dc2", localdb_refresh="1s",
                site_direct_backends="yes")
    # b: a proxy of site dc1 with the default SERIAL (see the module's docstring)
    b = cluster(geodb=two_dc.spec(ks, "dc1", local_dc="dc1"), setup=False, start=False,
                site="dc1", localdb_refresh="1s", site_direct_backends="yes")
    sites = _setup_two_sites(a, fleet)
    site_of = {name: site for site, names in sites.items() for name in names}
    a.start(DAEMON_START)
    b.start(DAEMON_START)
    for d in (a, b):
        g = _geodb_state(d)
        assert g["driver"] == "cassandra" and g["state"] == "ok", (d.name, g)

    # Each logs its own data centre's node as local, the other's as remote...
    _wait_cql_up(a, local_n=2, remote_n=1)
    _wait_cql_up(b, local_n=1, remote_n=2)
    # Each daemon is its site's controller, whose passes run in a worker thread with a
    # connection pool of its own (opened at the first pass; its handshake with the remote
    # node is no request routed there): let it open before counting.
    for d in (a, b):
        wait_for(lambda: d.status()["controller"]["passes"] >= 2, 60,
                 message=f"{d.name}'s controller to run its passes")
    # ...and sends its requests there only (refreshes every second): what the nodes count
    # on the daemons' connections (each daemon has its own role) over a few seconds.
    before = {(role, n): two_dc.client_requests(n, role) for role in ("dc1", "dc2")
              for n in (1, 2)}
    time.sleep(3.5)
    after = {(role, n): two_dc.client_requests(n, role) for role in ("dc1", "dc2")
             for n in (1, 2)}
    delta = {k: sum(after[k].values()) - sum(before[k].values()) for k in before}
    print(f"requests per connection (role, node) at start: {before}; in 3.5 s: {delta}")
    assert delta[("dc2", 2)] >= 3 and delta[("dc1", 1)] >= 3, delta
    # On the remote node: nothing on the connections that were there, and a connection
    # (re)opened meanwhile (a handshake that timed out on this loaded machine is tried
    # again) carried its handshake only.
    for key in (("dc2", 1), ("dc1", 2)):
        for conn, count in after[key].items():
            if conn in before[key]:
                assert count == before[key][conn], (key, conn, before[key], after[key])
            else:
                assert count <= HANDSHAKE_REQUESTS, (key, conn, after[key])
    # Not even at start, when the remote node's handshake may finish first: the remote
    # connections carried their handshakes only.
    for key in (("dc2", 1), ("dc1", 2)):
        assert before[key] and max(before[key].values()) <= HANDSHAKE_REQUESTS, (key, before)

    first_a = [f"user{i}" for i in range(1, 41)]
    first_b = [f"user{i}" for i in range(41, 81)]
    racing = [f"user{i}" for i in range(81, 101)]
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        landed = {}
        # 1. through a first: every group is new or a's own, so all land in site dc2
        landed.update(_run_all(pool, {(u, "a"): (_login_backend, (a, u)) for u in first_a},
                               timeout=120))
        # 2. through b first: new groups land in site dc1
        landed.update(_run_all(pool, {(u, "b"): (_login_backend, (b, u)) for u in first_b},
                               timeout=120))
        # 3. both meet a user at the same moment
        calls = {}
        for u in racing:
            barrier = threading.Barrier(2, timeout=30)
            calls[(u, "a")] = (_login_backend, (a, u, barrier))
            calls[(u, "b")] = (_login_backend, (b, u, barrier))
        landed.update(_run_all(pool, calls, timeout=120))
        # 4. everyone of 1. and 2. through the other daemon
        landed.update(_run_all(pool, {(u, "b"): (_login_backend, (b, u)) for u in first_a},
                               timeout=120))
        landed.update(_run_all(pool, {(u, "a"): (_login_backend, (a, u)) for u in first_b},
                               timeout=120))
    elapsed = time.monotonic() - t0

    users = first_a + first_b + racing
    differ = {u: (landed[(u, "a")], landed[(u, "b")]) for u in users
              if landed[(u, "a")] != landed[(u, "b")]}
    assert not differ, f"the two daemons routed users to different backends: {differ}"
    where = {u: landed[(u, "a")] for u in users}
    not_dc2 = {u: where[u] for u in first_a if site_of[where[u]] != "dc2"}
    assert not not_dc2, f"users first met by the dc2 proxy outside site dc2: {not_dc2}"

    # The GeoDB as each data centre has it (the CLI with a's config reads dc2 at
    # LOCAL_QUORUM, with b's dc1): the same groups, and where every login landed.
    groups_a = wait_for(lambda: (lambda x, y: x if x == y else None)(_assigned_groups(a),
                                                                      _assigned_groups(b)),
                        20, interval=0.5, message="dc1 and dc2 to list the same assignments")
    group_of = {}
    for u in users:
        g, backend = _user_group(a, u)
        assert backend == where[u] and groups_a.get(g) == where[u], (u, g, backend, where[u])
        group_of[u] = g
    groups_a_first = {group_of[u] for u in first_a}
    for u in first_b:  # b assigned these unless a had already assigned the group in 1.
        if group_of[u] not in groups_a_first:
            assert site_of[where[u]] == "dc1", (u, group_of[u], where[u])
    assert set(where.values()) == set(site_of), f"users did not spread over the fleet: {where}"
    for d in (a, b):
        assert d.proc.poll() is None
        assert _geodb_state(d)["state"] == "ok", d.name
    print(f"{len(landed)} logins through two daemons in two data centres in {elapsed:.1f} s; "
          f"{len(groups_a)} groups assigned")


# --------------------------------------------------------------------------- 3. dc1 dies


def test_dc1_dies_local_serial_daemon_in_dc2_goes_on(two_dc, cluster, fleet):
    ks = unique_keyspace("twodc_outage")
    common = dict(setup=False, start=False, localdb_refresh="1s", site_direct_backends="yes")
    # a: dc2 on its own (the configuration under test)
    a = cluster(geodb=two_dc.spec(ks, "dc2", local_dc="dc2", consistency="local_quorum",
                                  serial_consistency="local_serial", request_timeout=3000),
                site="dc2", **common)
    # c: the same but with the default serial_consistency=serial
    c = cluster(geodb=two_dc.spec(ks, "dc2", local_dc="dc2", consistency="local_quorum",
                                  request_timeout=3000),
                site="dc2", **common)
    # b: a proxy of dc1, whose own data centre is about to die
    b = cluster(geodb=two_dc.spec(ks, "dc1", local_dc="dc1", request_timeout=3000),
                site="dc1", **common)
    sites = _setup_two_sites(a, fleet)
    for d in (a, c, b):
        d.start(DAEMON_START)
    _wait_cql_up(a, local_n=2, remote_n=1)
    _wait_cql_up(b, local_n=1, remote_n=2)

    # Known users, assigned while both data centres are up (through a and b).
    known = [f"user{i}" for i in range(1, 31)]
    home = {}
    for i, u in enumerate(known):
        home[u] = _login_backend((a, b)[i % 2], u)
    for u in known:
        for d in (a, b, c):
            assert _login_backend(d, u) == home[u], (d.name, u)
    new_a = _new_users(a, 6)
    new_c = _new_users(a, 3, start=250, avoid_groups={_user_group(a, u)[0] for u in new_a})
    # every daemon has refreshed since: known groups in all LocalDBs
    for d in (a, b, c):
        n = _geodb_state(d)["refreshes"]
        wait_for(lambda: _geodb_state(d)["refreshes"] >= n + 2, 10, interval=0.2,
                 message=f"{d.name} to refresh")

    # ---- dc1 dies.
    pid = open(os.path.join(two_dc.node_dir(1), "pid")).read().strip()
    t_kill = time.monotonic()
    two_dc.stop_node(1, kill=True)
    assert not two_dc.answering(1)
    print(f"dc1 node (pid {pid}) killed")

    # a assigns new groups at once, in site dc2, with dc1 gone.
    landed_new = {}
    for u in new_a:
        line, took = _raw_login(a, u)
        assert line.startswith(b"a1 OK"), f"{u} through the local_serial daemon: {line!r}"
        assert took < 5, f"{u}: the login took {took:.1f} s"
        landed_new[u] = _login_backend(a, u)
        assert landed_new[u] in sites["dc2"], (u, landed_new[u])
    print(f"{len(new_a)} new groups assigned through dc2 alone, "
          f"{time.monotonic() - t_kill:.1f} s after the kill")
    for u in new_a:  # in the GeoDB as dc2 has it (a fresh CLI: connects and logs in via dc2)
        g, backend = _user_group(a, u)
        assert backend == landed_new[u], (u, g, backend, landed_new[u])

    # c (SERIAL) cannot: Paxos needs both replicas.  Its known users still go through.
    for u in new_c:
        line, took = _raw_login(c, u)
        assert line == b"a1 " + UNAVAILABLE, f"{u} through the SERIAL daemon: {line!r}"
        # at most one write timeout (write_request_timeout 2 s): not retried
        assert took < 5, f"{u}: the refusal took {took:.1f} s"
    assert re.search(r"event=geodb_error op=assign .*at SERIAL", c.log_text()), \
        [line for line in c.log_text().splitlines() if "geodb_" in line][-5:]
    for u in new_c:
        assert _user_group(a, u)[1] == "-", f"{u}'s group was assigned after all"

    # For about 10 s: a's, b's and c's known users keep landing home, a keeps assigning (no
    # new user left: it re-logs the new ones), a's GeoDB state is ok throughout.
    wait_for(lambda: _geodb_state(a)["state"] == "ok", 15, interval=0.2,
             message="a's GeoDB state to be ok with dc1 down")
    t_end = time.monotonic() + 10
    rounds = 0
    while time.monotonic() < t_end:
        for u in known:
            for d in (a, b, c):
                assert _login_backend(d, u) == home[u], (d.name, u, rounds)
        for u in new_a:
            assert _login_backend(a, u) == landed_new[u], (u, rounds)
        st = _geodb_state(a)
        assert st["state"] == "ok", f"a's GeoDB state with dc1 down: {st}"
        rounds += 1
    assert rounds >= 2, f"only {rounds} rounds of logins in 10 s"
    st = _geodb_state(a)
    assert st["assign_failures"] == 0 and st["refresh_failures"] == 0, st
    # b went over to dc2 (reads at LOCAL_QUORUM coordinated there) and stays ok.
    wait_for(lambda: _geodb_state(b)["state"] == "ok", 15, interval=0.2,
             message="b (local_dc=dc1) to read through dc2")
    assert re.search(rf"event=cql_host_down host={re.escape(IP[1])}:{CQL_PORT}", b.log_text())
    for d in (a, b, c):
        assert d.proc.poll() is None, f"{d.name} died"

    # ---- dc1 comes back.
    took = two_dc.start_node(1)
    print(f"dc1 node back in {took:.1f} s")
    # c can assign again once the nodes see each other.
    t0 = time.monotonic()
    served_c = wait_for(lambda: _try_login_backend(c, new_c[0]), 90, interval=1,
                        message="the SERIAL daemon to assign a new group with dc1 back")
    assert served_c in sites["dc2"]
    print(f"the SERIAL daemon assigned again {time.monotonic() - t0:.1f} s after the restart")
    # What dc2 assigned alone reaches dc1 (hinted handoff): b's CLI reads dc1.
    t0 = time.monotonic()
    wait_for(lambda: all(_user_group(b, u)[1] == landed_new[u] for u in new_a), 90,
             interval=1, message="dc1 to have the assignments made while it was down")
    print(f"dc1 had the assignments made without it {time.monotonic() - t0:.1f} s after "
          f"its restart")
    for u in new_a + known:  # and every daemon agrees
        want = landed_new.get(u) or home[u]
        for d in (a, b, c):
            got = wait_for(lambda: _try_login_backend(d, u), 30, interval=0.5,
                           message=f"{u} through {d.name}")
            assert got == want, (d.name, u, got, want)
    for d in (a, b, c):
        wait_for(lambda: _geodb_state(d)["state"] == "ok", 15, interval=0.2,
                 message=f"{d.name}'s GeoDB state to be ok with both data centres up")
        assert d.proc.poll() is None, f"{d.name} died"
    st = _geodb_state(a)
    assert st["assign_failures"] == 0, f"a failed to assign at some point: {st}"
