"""splitsites - two mail sites on two Cassandra data centres whose link the test can cut.

The pieces (all real processes, nothing mocked):

* ``SplitWorld`` (one per test module, fixture ``split_world`` in conftest.py):
  two Cassandra 5.0 nodes started by ``scripts/cassandra start-two`` as dc1 (127.0.5.11) and
  dc2 (127.0.5.12), CQL port 19046, with system_auth in both data centres and a role per site;
  four Dovecot backends of its own (scripts/backends.py Fleet) on 127.0.5.21-24, ports
  355x0: backend1 and backend2 for site dc1, backend3 and backend4 for site dc2; and a
  ``NetCut`` (netcut.py) for the internode link: Cassandra's storage port (7000) of both
  node addresses, dropped in both directions (nft, ``sources="any"``: Cassandra connects
  from 127.0.0.1, see netcut.py).
* ``SplitSites`` (one per test, fixture factory ``split_sites(**settings)``): a fresh keyspace;
  sites dc1 and dc2 with their backends online, each site's load balancer the other site's
  daemon (as in test_sites.py); one mailclusterd per site whose geodb spec names only its own
  data centre's node (``local_dc``, ``consistency=local_quorum``,
  ``serial_consistency=local_serial``: each side keeps reading and writing, conditional
  writes included, while the link is cut) and short controller timings (SITE_SETTINGS).

For a follow-up test (e.g. site failover across a cut)::

    def test_x(split_sites):
        s = split_sites(site_failover_delay="10s")   # extra daemon settings, both sites
        s.daemons["dc1"], s.daemons["dc2"]           # mchelpers.Daemon: .imap_port, .ports,
                                                     #   .config, .admin_port, .status(), .log_text()
        s.cli("dc2", "site", "list")                 # the CLI with that site's config (GeoDB
        s.cli_json("dc1", "group", "list")           #   as that data centre has it)
        s.backends["dc1"]                            # [Backend, Backend] (scripts/backends.py)
        s.site_of("backend3")                        # "dc2"
        s.login_backend("dc1", "user7")              # the backend a real IMAP LOGIN lands on
        s.cut(); s.heal(); s.is_cut                  # the internode link
        s.wait_cassandra_sees(up=False)              # both nodes' gossip says the other is down
        s.world.cql(1, "SELECT ...")                 # CQL on node 1 (dc1) or 2 (dc2)

Teardown (the fixture's): the link is healed, the daemons are stopped by PID (their logs
printed if the test failed).  The module's end stops the nodes (by the script, by PID) and the
backends.  The nft table is removed at heal, at teardown and at interpreter exit.

Measured here (2 shared cores; netcut drop): each node's gossip logs the other DOWN 18-19.5 s
after the cut (phi failure detector; reject instead of drop: the same, 18.2-18.6 s), UP 0.7-1 s
after the heal; a write made on one side during the cut reaches the other 1-20 s after the
heal (hinted handoff; 2.4 s and 7.2 s in two runs of test_site_split.py, up to 19.8 s by hand
with plain CQL writes).  Each site's controller records the other unreachable 4.8-5.7 s after
the cut (site_reachability_timeout 5 s) and reachable again 0.4-1.4 s after the heal.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from typing import Optional

import mchelpers
from mchelpers import backend_of, close_quietly, unique_keyspace, wait_for
from netcut import NetCut, nft_available, stale_tables

IP = {1: "127.0.5.11", 2: "127.0.5.12"}
DC = {1: "dc1", 2: "dc2"}
SITES = ("dc1", "dc2")
NODE_OF_SITE = {"dc1": 1, "dc2": 2}
CQL_PORT = 19046  # not the session node's 19042, nor test_cassandra_two_dc's 19044
STORAGE_PORT = 7000  # fixed by scripts/cassandra
HEAP = "512M"
START_TIMEOUT = 240
MIN_AVAILABLE_MB = 2500

FLEET_FIRST_IP = "127.0.5.21"
FLEET_COUNT = 4
FLEET_PORTS = {"imap": 35500, "pop3": 35510, "lmtp": 35520, "sieve": 35540, "submission": 35550}
FLEET_DOVEADM_PORT = 35560
FLEET_USERS = 300
SITE_BACKENDS = {"dc1": ("backend1", "backend2"), "dc2": ("backend3", "backend4")}

ROLES = {"admin": ("mc_split_admin", "admin_pw"), "dc1": ("mc_split_dc1", "dc1_pw"),
         "dc2": ("mc_split_dc2", "dc2_pw")}
PROTOCOLS = ("imap", "pop3", "lmtp")
TRUSTED = "127.0.0.0/8"
DAEMON_START = 30

# Daemon settings for both sites: short enough that a test sees the controller act within
# seconds.  The controller passes every probe_interval; its lease is controller_lease.
SITE_SETTINGS = {
    "localdb_refresh": "1s",
    "probe_interval": "1s",
    "probe_timeout": "2s",
    "controller_lease": "3s",
    "backend_failover_delay": "5s",
    "backend_recovery_delay": "5s",
    "site_reachability_timeout": "5s",
    "move_timeout": "10s",
    "login_trusted_networks": TRUSTED,
}

# Site failover for the tests that fail sites over across the cut (pass them to
# split_sites(...)): a site unreachable this long fails over; cells written (or released) per
# second; home site healthy this long: release the cells.
SITE_FAILOVER_SETTINGS = {
    "site_failover_delay": "8s",
    "site_failover_rate": "5",
    "site_failback_delay": "60s",
}



class SplitWorld:
    """Two Cassandra nodes (dc1, dc2), four backends, and the cut of the link between the
    nodes.  start() / stop(); everything it starts is stopped by PID."""

    def __init__(self, root: str):
        self.root = root
        self.cassandra_dir = os.path.join(root, "cassandra")
        self.port = CQL_PORT
        self.fleet = None
        self.netcut = NetCut([IP[1]], [IP[2]], ports=[STORAGE_PORT], mode="drop",
                             sources="any")
        self.nodes_started = False
        self.start_seconds: Optional[float] = None

    # ---- life
    def preflight(self) -> Optional[str]:
        """None if this machine can run the world, else why not."""
        why = nft_available()
        if why:
            return why
        stale = stale_tables()
        if stale:
            return (f"nft tables of dead test processes still cut traffic: {stale} (delete "
                    f"them with 'nft delete table inet NAME')")
        avail = mchelpers.mem_available_mb()
        if avail is not None and avail < MIN_AVAILABLE_MB:
            return f"two Cassandra nodes need about 2 GB of memory; only {avail} MB available"
        busy = [IP[n] for n in (1, 2) if not mchelpers.cassandra_address_free(IP[n], CQL_PORT)]
        busy += [b for b in (self._fleet_ips()) if mchelpers.port_accepts(
            b, FLEET_PORTS["imap"], 0.3)]
        if busy:
            return (f"addresses already in use: {busy} (a stray node or backend? "
                    f"'ps -ef | grep -e CassandraDaemon -e dovecot')")
        return None

    @staticmethod
    def _fleet_ips() -> list[str]:
        import ipaddress
        base = ipaddress.ip_address(FLEET_FIRST_IP)
        return [str(base + i) for i in range(FLEET_COUNT)]

    def start(self) -> None:
        from backends import Fleet
        r = mchelpers.cassandra_script("fetch", timeout=mchelpers.CASSANDRA_FETCH_TIMEOUT)
        if r.returncode != 0:
            raise RuntimeError("scripts/cassandra fetch failed; run 'make deps' (Java 17 + "
                               f"Maven)\n{r.stdout[-3000:]}{r.stderr[-5000:]}")
        t0 = time.monotonic()
        self.nodes_started = True  # from here on, stop() stops them (start-two may leave one)
        self._check(self._script("start-two", "--dir", self.cassandra_dir, "--ip1", IP[1],
                                 "--ip2", IP[2], "--cql-port", str(CQL_PORT), "--heap", HEAP,
                                 "--auth", "--timeout", str(START_TIMEOUT),
                                 timeout=2 * START_TIMEOUT + 120), "start-two")
        self.start_seconds = time.monotonic() - t0
        self._setup_auth()
        self.fleet = Fleet(os.path.join(self.root, "fleet"), count=FLEET_COUNT,
                           first_ip=FLEET_FIRST_IP, ports=FLEET_PORTS, users=FLEET_USERS,
                           messages=1, doveadm_port=FLEET_DOVEADM_PORT)
        self.fleet.start()

    def stop(self) -> None:
        errors = []
        try:
            self.netcut.close()  # before stopping: the script waits for the storage port
        except Exception as e:  # noqa: BLE001 - report all, stop the rest anyway
            errors.append(f"healing: {e}")
        if self.fleet is not None:
            try:
                self.fleet.stop()
            except Exception as e:  # noqa: BLE001
                errors.append(f"stopping the backends: {e}")
        if self.nodes_started:
            try:
                self._check(self._script("stop-two", "--dir", self.cassandra_dir, "--timeout",
                                         "60", timeout=200), "stop-two")
            except Exception as e:  # noqa: BLE001
                errors.append(str(e))
        if errors:
            raise RuntimeError("; ".join(errors))

    # ---- the link
    def cut(self) -> None:
        self.netcut.cut()

    def heal(self) -> None:
        self.netcut.heal()

    @property
    def is_cut(self) -> bool:
        return self.netcut.is_cut

    def node_log(self, n: int) -> str:
        try:
            with open(os.path.join(self.cassandra_dir, f"node{n}", "logs", "system.log"),
                      errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_marks(self) -> dict:
        return {n: len(self.node_log(n)) for n in (1, 2)}

    def sees(self, n: int, up: bool, since: Optional[dict] = None) -> bool:
        """Node n's gossip has logged the other node UP (or DOWN) since the marks."""
        other = IP[3 - n]
        start = (since or {}).get(n, 0)
        word = "UP" if up else "DOWN"
        return re.search(rf"/{re.escape(other)}:{STORAGE_PORT} is now {word}",
                         self.node_log(n)[start:]) is not None

    # ---- CQL
    @staticmethod
    def _script(*args: str, timeout: float) -> subprocess.CompletedProcess:
        return mchelpers.cassandra_run(*args, timeout=timeout)

    def _check(self, r: subprocess.CompletedProcess, what: str) -> None:
        mchelpers.cassandra_check(r, what, self.cassandra_dir)

    def cql(self, n: int, statement: str, role: Optional[str] = "admin",
            timeout: float = 30) -> str:
        """One statement on node n (1 = dc1, 2 = dc2), as one of ROLES (None: the built-in
        superuser, usable only while both nodes see each other)."""
        user, password = ROLES[role] if role else (mchelpers.CASSANDRA_USER,
                                                    mchelpers.CASSANDRA_PASSWORD)
        r = self._script("cql", "--host", IP[n], "--port", str(CQL_PORT), "--user", user,
                         "--password", password, statement, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"CQL on {IP[n]} as {user}: {statement!r}: {r.stderr.strip()}")
        return r.stdout

    def rows(self, n: int, statement: str, role: Optional[str] = "admin") -> list[dict]:
        lines = self.cql(n, statement, role).splitlines()
        if not lines:
            return []
        header = lines[0].split("\t")
        return [dict(zip(header, line.split("\t"))) for line in lines[1:]]

    def _setup_auth(self) -> None:
        """system_auth in both data centres (else a node cut off from the one holding the
        role rows cannot log anyone in), and our roles written to both."""
        mchelpers.two_dc_roles(lambda st: self.cql(1, st, role=None), self.rows, ROLES)

    def spec(self, keyspace: str, site: str, **extra) -> str:
        """The geodb setting of site's daemons: its own data centre's node only."""
        n = NODE_OF_SITE[site]
        user, password = ROLES[site]
        fields = {"hosts": IP[n], "port": str(CQL_PORT), "keyspace": keyspace,
                  "username": user, "password": password, "local_dc": DC[n],
                  "consistency": "local_quorum", "serial_consistency": "local_serial",
                  "request_timeout": "3000", "page_size": str(mchelpers.CASSANDRA_PAGE_SIZE)}
        fields.update({k: str(v) for k, v in extra.items()})
        return "cassandra:" + ";".join(f"{k}={v}" for k, v in fields.items())


class SplitSites:
    """One keyspace, sites dc1 and dc2, and one daemon per site (see the module's docstring)."""

    def __init__(self, world: SplitWorld, workdir: str, **settings):
        self.world = world
        self.workdir = workdir
        self.keyspace = unique_keyspace("split")
        self.backends = {site: [world.fleet.backend(n) for n in names]
                         for site, names in SITE_BACKENDS.items()}
        self.daemons: dict[str, mchelpers.Daemon] = {}
        for site in SITES:
            extra = dict(SITE_SETTINGS, site=site)
            extra.update({k: str(v) for k, v in settings.items()})
            d = mchelpers.Daemon(workdir, world.spec(self.keyspace, site), world.fleet,
                                 extra=extra, name=f"split-{site}", protocols=PROTOCOLS)
            self.daemons[site] = d

    # ---- set-up
    def setup(self) -> None:
        """geodb init through dc1; sites, backends (online) and load balancers."""
        d = self.daemons["dc1"]
        r = d.cli("geodb", "init")
        assert r.returncode == 0, f"geodb init: {r.stdout}{r.stderr}"
        for site in SITES:
            lb = ",".join(f"{p}=127.0.0.1:{self.daemons[site].ports[p]}" for p in PROTOCOLS)
            steps = [("site", "add", "--load-balancer", lb, site)]
            steps += [("backend", "add", "--site", site, b.name, b.ip)
                      for b in self.backends[site]]
            steps += [("backend", "update", "--status", "online", b.name)
                      for b in self.backends[site]]
            for args in steps:
                self.cli_ok("dc1", *args)
        # dc2's node has all of it before dc2's daemon starts (replicated synchronously to
        # the local replica only: wait for the remote one)
        wait_for(lambda: len(self.cli_json("dc2", "backend", "list")) == 4 and
                 len(self.cli_json("dc2", "site", "list")) == 2, 30, interval=0.5,
                 message="dc2's node to have the sites and backends")

    def start(self) -> None:
        for d in self.daemons.values():
            d.start(DAEMON_START)
        for site, d in self.daemons.items():
            wait_for(lambda: d.status()["controller"].get("me") and
                     d.status()["controller"].get("passes", 0) >= 2, 30, interval=0.2,
                     message=f"{site}'s daemon to be its site's controller")

    def stop(self) -> list[str]:
        return mchelpers.stop_daemons(self.daemons.values())

    # ---- the link
    def cut(self) -> None:
        self.world.cut()

    def heal(self) -> None:
        self.world.heal()

    @property
    def is_cut(self) -> bool:
        return self.world.is_cut

    def wait_cassandra_sees(self, up: bool, since: Optional[dict] = None,
                            timeout: float = 60) -> float:
        """Wait until both nodes' gossip logged the other UP (or DOWN) since the marks
        (world.log_marks() taken before the cut or heal); seconds waited."""
        t0 = time.monotonic()
        wait_for(lambda: self.world.sees(1, up, since) and self.world.sees(2, up, since),
                 timeout, interval=0.2,
                 message=f"both Cassandra nodes to see the other {'UP' if up else 'DOWN'}")
        return time.monotonic() - t0

    # ---- CLI per site (the GeoDB as that site's data centre has it)
    def cli(self, site: str, *args: str, fmt: Optional[str] = None):
        return self.daemons[site].cli(*args, fmt=fmt)

    def cli_ok(self, site: str, *args: str):
        r = self.cli(site, *args)
        assert r.returncode == 0, f"mailcluster ({site}) {' '.join(args)}: {r.stdout}{r.stderr}"
        return r

    def cli_json(self, site: str, *args: str) -> list:
        return self.daemons[site].cli_json(*args)

    # ---- model helpers
    def site_of(self, backend: str) -> str:
        for site, names in SITE_BACKENDS.items():
            if backend in names:
                return site
        raise KeyError(backend)

    def user_group(self, site: str, user: str) -> tuple[int, str]:
        """(group, backend or "-") as site's data centre has it (assigns nothing)."""
        st = self.cli_json(site, "user", "status", user)[0]
        return int(st["group"]), st["backend"]

    def assignments(self, site: str) -> dict:
        """group -> backend, as site's data centre has it."""
        return {int(g["group"]): g["backend"] for g in self.cli_json(site, "group", "list")
                if g["backend"] not in ("", "-")}

    def backend_rows(self, site: str) -> dict:
        """backend name -> its row of `backend list`, as site's data centre has it."""
        return {b["backend"]: b for b in self.cli_json(site, "backend", "list")}

    def reachability(self, site: str) -> dict:
        """(observer, target) -> row of `site reachability list`, as site's data centre has
        it."""
        return {(r["observer"], r["target"]): r
                for r in self.cli_json(site, "site", "reachability", "list")}

    def new_users(self, count: int, start: int = 1, avoid_groups: frozenset = frozenset(),
                  site: str = "dc1") -> list[str]:
        """count users (user<start>.. up to FLEET_USERS) whose hash groups have no backend
        yet, each in a group of its own and none in avoid_groups."""
        assigned = self.assignments(site)
        users, groups = [], set(avoid_groups)
        for i in range(start, FLEET_USERS + 1):
            u = f"user{i}"
            g, backend = self.user_group(site, u)
            if g in assigned or g in groups:
                continue
            users.append(u)
            groups.add(g)
            if len(users) == count:
                return users
        raise AssertionError(f"only {len(users)} users with an unassigned group of their own")

    def login_backend(self, site: str, user: str) -> str:
        """A real IMAP LOGIN through site's daemon: the backend it lands on."""
        c = self.daemons[site].login(user)
        try:
            return backend_of(c)
        finally:
            close_quietly(c)

    def login_line(self, site: str, user: str) -> re.Match:
        """site's daemon's latest event=login result=ok line for user (IMAP): groups
        backend, address, via_site."""
        matches = list(re.finditer(
            rf"event=login result=ok protocol=imap user={user} group=\d+ backend=(\S+) "
            rf"address=(\S+)(?: via_site=(\S+))?", self.daemons[site].log_text()))
        assert matches, f"no login of {user} in {site}'s daemon log"
        return matches[-1]
