"""Fixtures for the mailcluster integration tests.

* ``fleet``    (session) - 3 real Dovecot backends on 127.0.3.2-4, users user1..user300, each
  with doveadm's HTTP API (``backend.doveadm_url``, ``backend.doveadm_api_key``).
* ``tls_files`` (session) - a self-signed certificate/key made with the openssl CLI.
* ``cluster``  (function) - factory: ``cluster(**settings)`` writes a config with free ports,
  creates a fresh GeoDB (site dc1 + the fleet's backends, online) and starts mailclusterd.
  ``cluster(geodb=other.geodb_path, setup=False)`` starts a second daemon on the same GeoDB.
* ``shared_cluster`` (module) - one default daemon (with TLS) for tests that do not change
  the GeoDB.
* ``cassandra_node`` (session) - one real Cassandra 5.0 node (scripts/cassandra) on
  127.0.0.21:19042 with PasswordAuthenticator and optional TLS; ``spec(keyspace)`` gives the
  geodb setting.  Started on first use, stopped (by its PID) at the end of the session.  Java,
  Maven or Cassandra missing FAILS the tests that use it: Cassandra is part of the suite.
* ``split_world`` (module) / ``split_sites`` (function, factory) - two Cassandra data centres
  on 127.0.5.11/12:19046, four backends of their own on 127.0.5.21-24 and an nft cut of the
  link between the nodes; ``split_sites(**settings)`` gives sites dc1 and dc2 with a daemon
  each (splitsites.py, netcut.py; test_site_split.py).

Daemons are stopped by PID (SIGTERM, then SIGKILL after a bound). The daemon log is printed
on teardown when the test failed.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))

from backends import Fleet  # noqa: E402

import mchelpers  # noqa: E402
from mchelpers import Daemon  # noqa: E402


def pytest_configure(config):
    for path in (mchelpers.DAEMON, mchelpers.CLI):
        if not os.access(path, os.X_OK):
            raise pytest.UsageError(f"{path} is missing: run 'make -C {mchelpers.REPO} all' first")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(request) -> bool:
    node = request.node
    return any(getattr(getattr(node, f"rep_{w}", None), "failed", False)
               for w in ("setup", "call"))


@pytest.fixture(scope="session")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    f = Fleet(str(root), count=3, first_ip=mchelpers.FLEET_FIRST_IP, ports=mchelpers.FLEET_PORTS,
              users=mchelpers.FLEET_USERS, messages=mchelpers.FLEET_MESSAGES,
              doveadm_port=mchelpers.FLEET_DOVEADM_PORT)
    f.start()
    yield f
    f.stop()


@pytest.fixture(autouse=True)
def _fleet_healthy(request):
    """Tests that stop a backend must restart it; catch it here if one did not."""
    yield
    if "fleet" in request.fixturenames:
        f = request.getfixturevalue("fleet")
        for b in f.backends:
            if not b.is_running():
                b.start()


CASSANDRA_IP = "127.0.0.21"
CASSANDRA_PORT = 19042  # not 9042: a developer's own Cassandra may hold that
# if another test session's node holds 127.0.0.21 (several engineers on one machine)
CASSANDRA_SPARE_IPS = ("127.0.0.121", "127.0.0.131", "127.0.0.141")


@pytest.fixture(scope="session")
def cassandra_node(tmp_path_factory):
    """The session's Cassandra node: attributes host, port, username, password, ca_file (the
    CA of its optional TLS), dir; spec(keyspace, **extra) -> "cassandra:hosts=...;...".
    Give every test its own keyspace (mchelpers.unique_keyspace).  Do not stop it."""
    root = str(tmp_path_factory.mktemp("cassandra"))
    node, error = None, None
    try:
        node = mchelpers.start_cassandra_node(root, CASSANDRA_IP, CASSANDRA_PORT, tls=True,
                                              spare_ips=CASSANDRA_SPARE_IPS)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        error = str(e)
    if node is None:  # a failure, not a skip: Cassandra is part of the suite
        pytest.fail(f"Cassandra for the integration tests: {error}", pytrace=False)
    print(f"\ncassandra_node: {node.host}:{node.port} (TLS CA {node.ca_file}) up in "
          f"{node.start_seconds:.1f} s, dir {node.dir}")
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                    "/CN=localhost", "-days", "2", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class ClusterFactory:
    def __init__(self, workdir, fleet, tls_files):
        self.workdir = workdir
        self.fleet = fleet
        self.tls_files = tls_files
        self.daemons: list[Daemon] = []

    def __call__(self, geodb: str | None = None, setup: bool = True, tls: bool = False,
                 start: bool = True, protocols: tuple = ("imap",), haproxy: tuple = (),
                 localdb: str | None = None, localdb_refresh: str | None = None,
                 start_timeout: float = 15, **settings) -> Daemon:
        """geodb: a SQLite path or a whole geodb setting (cassandra_node.spec(keyspace));
        default: a fresh SQLite file.  setup: geodb init (not SQLite) + site + backends."""
        n = len(self.daemons) + 1
        name = f"mc{n}"
        if geodb is None:
            geodb = os.path.join(self.workdir, f"geodb{n}.sqlite")
        d = Daemon(str(self.workdir), geodb, self.fleet,
                   extra={k: str(v) for k, v in settings.items()},
                   tls=self.tls_files if tls else None, name=name, protocols=protocols,
                   haproxy=haproxy, localdb=localdb, localdb_refresh=localdb_refresh)
        self.daemons.append(d)
        if setup:
            d.setup_geodb()
        if start:
            d.start(start_timeout)
        return d

    def teardown(self, failed: bool) -> None:
        problems = mchelpers.stop_daemons(self.daemons)
        if failed or problems:
            for d in self.daemons:
                print(f"\n===== {d.name} log ({d.log_path}) =====")
                print(d.log_text()[-20000:])
        assert not problems, problems


@pytest.fixture
def cluster(request, tmp_path, fleet, tls_files):
    factory = ClusterFactory(tmp_path, fleet, tls_files)
    yield factory
    factory.teardown(_failed(request))


@pytest.fixture(scope="module")
def shared_cluster(request, tmp_path_factory, fleet, tls_files):
    factory = ClusterFactory(tmp_path_factory.mktemp("shared"), fleet, tls_files)
    d = factory(tls=True)
    yield d
    failed = request.session.testsfailed > 0
    factory.teardown(failed)


@pytest.fixture
def cli(cluster):
    """cli(*args) against a fresh default cluster's config (no daemon needed for GeoDB commands)."""
    d = cluster(start=False)
    return d.cli


# ---- two sites on two Cassandra data centres whose link can be cut (splitsites.py)


@pytest.fixture(scope="module")
def split_world(tmp_path_factory):
    """Two Cassandra nodes (dc1 127.0.5.11, dc2 127.0.5.12), four backends (127.0.5.21-24)
    and the nft cut of the link between the nodes; the module's own.  Failing to start them
    FAILS the tests (never a skip)."""
    from splitsites import SplitWorld
    w = SplitWorld(str(tmp_path_factory.mktemp("split")))
    why = w.preflight()
    if why:
        pytest.fail(f"split sites: {why}", pytrace=False)
    try:
        w.start()
    except (RuntimeError, AssertionError, OSError) as e:
        try:
            w.stop()
        except RuntimeError as stop_error:
            e = f"{e}\n(and stopping: {stop_error})"
        pytest.fail(f"split sites: {e}", pytrace=False)
    print(f"\nsplit_world: Cassandra up in {w.start_seconds:.1f} s, dir {w.root}")
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture
def split_sites(request, split_world, tmp_path):
    """Factory: split_sites(**settings) -> a started splitsites.SplitSites (fresh keyspace,
    sites dc1 and dc2, a daemon per site).  Teardown heals the link and stops the daemons."""
    from splitsites import SplitSites
    made = []

    def make(**settings):
        workdir = tmp_path / f"sites{len(made) + 1}"
        workdir.mkdir()
        s = SplitSites(split_world, str(workdir), **settings)
        made.append(s)
        s.setup()
        s.start()
        return s

    try:
        yield make
    finally:
        split_world.heal()
        problems = []
        for s in made:
            problems += s.stop()
            if _failed(request) or problems:
                for d in s.daemons.values():
                    print(f"\n===== {d.name} log ({d.log_path}) =====")
                    print(d.log_text()[-20000:])
        assert not problems, problems
