"""Helpers shared by the mailcluster integration tests (imported by conftest.py and the tests).

Everything here talks to real processes: the mailcluster CLI, a running mailclusterd, real
Dovecot backends. Nothing is mocked.
"""

from __future__ import annotations

import errno
import imaplib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from typing import Callable, Optional

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# MAILCLUSTERD lets the suite run against another build (e.g. a sanitizer one)
DAEMON = os.environ.get("MAILCLUSTERD", os.path.join(REPO, "build", "mailclusterd"))
CLI = os.path.join(REPO, "build", "mailcluster")

FLEET_FIRST_IP = "127.0.3.2"
FLEET_PORTS = {"imap": 35300, "pop3": 35310, "lmtp": 35320, "sieve": 35340, "submission": 35350}
# each backend's doveadm HTTP API (scripts/backends.py: Backend.doveadm_url / doveadm_api_key)
FLEET_DOVEADM_PORT = 35360
FLEET_USERS = 300
FLEET_MESSAGES = 3
PASSWORD = "password"
SITE = "dc1"

# imaplib only allows ID before login unless told otherwise.
imaplib.Commands["ID"] = ("NONAUTH", "AUTH", "SELECTED")


# --------------------------------------------------------------------------- polling


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.05,
             message: str = "condition") -> object:
    """Poll predicate until it returns a truthy value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {message}")
        time.sleep(interval)


# --------------------------------------------------------------------------- ports


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """count distinct free ports: all bound at once before any is released (free_port()
    called twice can return the same port: the kernel may hand a just-released one out
    again, and a daemon given it for two listeners fails with "Address already in use")."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- IMAP clients


class SourceIMAP4(imaplib.IMAP4):
    """imaplib.IMAP4 that can bind a chosen loopback source address."""

    def __init__(self, host: str, port: int, source_ip: Optional[str] = None,
                 timeout: Optional[float] = 20):
        self._source_ip = source_ip
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        src = (self._source_ip, 0) if self._source_ip else None
        return socket.create_connection((self.host, self.port), timeout, source_address=src)


def imap_connect(port: int, source_ip: Optional[str] = None, host: str = "127.0.0.1",
                 timeout: float = 20) -> SourceIMAP4:
    return SourceIMAP4(host, port, source_ip=source_ip, timeout=timeout)


def imap_login(port: int, user: str, source_ip: Optional[str] = None, password: str = PASSWORD,
               host: str = "127.0.0.1", timeout: float = 20) -> SourceIMAP4:
    c = imap_connect(port, source_ip=source_ip, host=host, timeout=timeout)
    try:
        typ, _ = c.login(user, password)
        assert typ == "OK"
    except BaseException:
        close_quietly(c)
        raise
    return c


def backend_of(imap: imaplib.IMAP4) -> str:
    """Ask whoever answers on this connection for its name (ID NIL -> * ID ("name" "...")."""
    typ, data = imap._simple_command("ID", "NIL")
    assert typ == "OK", (typ, data)
    typ, data = imap._untagged_response(typ, data, "ID")
    line = data[0] if isinstance(data[0], bytes) else data[0][0]
    m = re.search(rb'"name" "([^"]+)"', line)
    assert m, f"no name in ID reply {data!r}"
    return m.group(1).decode()


def close_quietly(c: imaplib.IMAP4) -> None:
    try:
        c.logout()
    except Exception:
        try:
            c.shutdown()
        except Exception:
            pass


def unverified_ssl_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --------------------------------------------------------------------------- raw sockets


class RawIMAP:
    """A raw line-oriented IMAP client for protocol-level tests."""

    def __init__(self, port: int, host: str = "127.0.0.1", source_ip: Optional[str] = None,
                 timeout: float = 15, tls: bool = False):
        src = (source_ip, 0) if source_ip else None
        self.sock = socket.create_connection((host, port), timeout=timeout, source_address=src)
        if tls:  # implicit TLS (imaps)
            self.sock = unverified_ssl_context().wrap_socket(self.sock,
                                                             server_hostname="localhost")
        self.buf = b""
        self.greeting = self.readline()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def readline(self) -> bytes:
        """One line including CRLF; raises EOFError if the peer closed first."""
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise EOFError(f"connection closed; partial data {self.buf[:200]!r}")
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def read_until_tagged(self, tag: bytes) -> list[bytes]:
        """Lines up to and including the one starting with 'tag '. Handles {n} literals."""
        lines = []
        while True:
            line = self.readline()
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if m:
                n = int(m.group(1))
                while len(self.buf) < n:
                    if not self._fill():
                        raise EOFError("closed inside a literal")
                line += self.buf[:n]
                self.buf = self.buf[n:]
                line += self.readline()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def read_to_eof(self, timeout: float = 10) -> bytes:
        """Everything until the peer closes (bounded); returns buffered + received bytes."""
        data = self.buf
        self.buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return data  # closed with a reset (e.g. unread input was discarded)
            except socket.timeout:
                break
            if not chunk:
                return data
            data += chunk
        raise AssertionError(f"peer did not close within {timeout}s; got {data[-300:]!r}")

    def is_closed(self, timeout: float = 5) -> bool:
        """True if the peer closes (EOF/reset) within timeout, discarding any further data."""
        try:
            self.read_to_eof(timeout)
            return True
        except AssertionError:
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------- CLI


def spawn_retrying(fn, *a, **kw):
    """Other engineers rebuild build/ while tests run: exec can briefly fail with EACCES,
    ETXTBSY or ENOENT while the linker rewrites the binary. Retry the exec (bounded); this
    never retries a program that ran."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return fn(*a, **kw)
        except OSError as e:
            if time.monotonic() > deadline or \
                    e.errno not in (errno.EACCES, errno.ETXTBSY, errno.ENOENT):
                raise
            time.sleep(0.2)


def run_cli(config: str, *args: str, fmt: Optional[str] = None,
            timeout: float = 30) -> subprocess.CompletedProcess:
    cmd = [CLI, "-c", config]
    if fmt:
        cmd += ["-f", fmt]
    cmd += list(args)
    return spawn_retrying(subprocess.run, cmd, capture_output=True, text=True, timeout=timeout)


def cli_json(config: str, *args: str) -> list:
    r = run_cli(config, *args, fmt="json")
    assert r.returncode == 0, f"mailcluster {' '.join(args)} failed ({r.returncode}): {r.stderr}"
    return json.loads(r.stdout)


# --------------------------------------------------------------------------- daemon


def is_geodb_spec(s: str) -> bool:
    """A whole geodb setting ("sqlite:PATH", "cassandra:...") rather than a SQLite path."""
    return re.match(r"[a-z]+:", s) is not None and not s.startswith("/")


class Daemon:
    """One mailclusterd process with its config file and log."""

    # listeners that are implicit TLS, and the plain one whose port they mirror
    IMPLICIT_TLS = {"imaps": "imap", "pop3s": "pop3", "submissions": "submission"}

    def __init__(self, workdir: str, geodb_path: str, fleet, extra: Optional[dict] = None,
                 tls: Optional[tuple[str, str]] = None, name: str = "mc",
                 protocols: tuple = ("imap",), haproxy: tuple = (),
                 localdb: Optional[str] = None, localdb_refresh: Optional[str] = None):
        """geodb_path: a SQLite file, or a whole geodb setting ("sqlite:PATH",
        "cassandra:hosts=...;keyspace=..."); self.geodb is the setting, self.geodb_path the
        SQLite file (None for other drivers).  localdb: the LocalDB file (default: one per
        daemon in workdir); localdb_refresh: e.g. "1s" (default: the daemon's).
        protocols: the plain listeners to open (imap, pop3, lmtp, sieve, submission); with
        tls, the implicit-TLS twins (imaps, pop3s, submissions) of those are opened too.
        self.ports maps every opened listener name to its port.  haproxy: listener names that
        get haproxy = yes (set haproxy_trusted_networks in extra)."""
        self.workdir = workdir
        self.name = name
        if is_geodb_spec(geodb_path):
            self.geodb = geodb_path
            self.geodb_path = geodb_path[len("sqlite:"):] \
                if geodb_path.startswith("sqlite:") else None
        else:
            self.geodb = f"sqlite:{geodb_path}"
            self.geodb_path = geodb_path
        self.localdb_path = localdb or os.path.join(workdir, f"{name}-localdb.sqlite")
        self.fleet = fleet
        listeners = list(protocols)
        if tls:
            listeners += [t for t, plain in self.IMPLICIT_TLS.items() if plain in protocols]
        *ports, self.admin_port = free_ports(len(listeners) + 1)
        self.ports = dict(zip(listeners, ports))
        self.imap_port = self.ports.get("imap")
        self.imaps_port = self.ports.get("imaps")
        self.config = os.path.join(workdir, f"{name}.conf")
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.proc: Optional[subprocess.Popen] = None
        settings = {
            "site": SITE,
            "geodb": self.geodb,
            "localdb": self.localdb_path,
            "group_count": "256",
            "admin_listen": f"127.0.0.1:{self.admin_port}",
            "proxy_timeout": "3s",
            "plaintext_auth": "tls",
            "log_level": "info",
            # tests that are not about balancing must not see groups move under them
            "balance": "off",
        }
        if localdb_refresh is not None:
            settings["localdb_refresh"] = str(localdb_refresh)
        if tls:
            settings["tls_cert"], settings["tls_key"] = tls
        settings.update(extra or {})
        lines = [f"{k} = {v}" for k, v in settings.items()]
        lines += ["listen {"]
        for listener, port in self.ports.items():
            if listener in haproxy:
                lines += [f"  {listener} {{", f"    address = 127.0.0.1:{port}",
                          "    haproxy = yes", "  }"]
            else:
                lines.append(f"  {listener} = 127.0.0.1:{port}")
        lines += ["}", "backend_port {"]
        lines += [f"  {proto} = {port}" for proto, port in fleet.ports.items()]
        lines += ["}"]
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    # ---- CLI bound to this config
    def cli(self, *args: str, fmt: Optional[str] = None) -> subprocess.CompletedProcess:
        return run_cli(self.config, *args, fmt=fmt)

    def cli_json(self, *args: str) -> list:
        return cli_json(self.config, *args)

    def setup_geodb(self) -> None:
        """geodb init (for a GeoDB other than SQLite, whose file the CLI creates by itself),
        then site add + every fleet backend added and put online."""
        if not self.geodb.startswith("sqlite:"):
            r = self.cli("geodb", "init")
            assert r.returncode == 0, f"mailcluster geodb init: {r.stdout}{r.stderr}"
        for args in [("site", "add", SITE)] + \
                [("backend", "add", "--site", SITE, b.name, b.ip) for b in self.fleet.backends] + \
                [("backend", "update", "--status", "online", b.name) for b in self.fleet.backends]:
            r = self.cli(*args)
            assert r.returncode == 0, f"mailcluster {' '.join(args)}: {r.stderr}"

    def start(self, timeout: float = 15, wait_loaded: bool = True) -> None:
        """Start and wait (within timeout) until the listeners accept and, unless
        wait_loaded is False, until the daemon has a routing state to route by."""
        log = open(self.log_path, "ab")
        try:
            self.proc = spawn_retrying(subprocess.Popen, [DAEMON, "-c", self.config, "-F"],
                                        stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while not (port_accepts("127.0.0.1", self.imap_port)
                   and port_accepts("127.0.0.1", self.admin_port)):
            if self.proc.poll() is not None:
                raise RuntimeError(f"mailclusterd exited with {self.proc.returncode} during start:\n"
                                   + self.log_text())
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("mailclusterd did not accept connections in time:\n"
                                   + self.log_text())
            time.sleep(0.05)
        # Our readiness probe was a client too: start tests from a daemon with none.
        wait_for(lambda: self.status()["clients"] == 0, 5,
                 message="the readiness probe connection to be released")
        if wait_loaded:
            # A remote GeoDB (Cassandra) is read in the background after the start: the
            # daemon is ready once its LocalDB holds a state (from the GeoDB or its file).
            wait_for(lambda: self.status().get("localdb", {}).get("loaded", True),
                     max(1.0, deadline - time.monotonic()), interval=0.1,
                     message=f"{self.name} to load its LocalDB (status: localdb.loaded)")

    def restart(self, timeout: float = 15, wait_loaded: bool = True) -> None:
        rc = self.stop()
        assert rc == 0, f"{self.name} exited with {rc} on SIGTERM"
        self.start(timeout, wait_loaded)

    def stop(self, timeout: float = 10) -> Optional[int]:
        p = self.proc
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        self.proc = None
        return p.returncode

    def log_text(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # ---- admin API
    def http(self, method: str, path: str, timeout: float = 10) -> tuple[int, str]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}{path}", method=method,
                                     data=b"" if method == "POST" else None)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def status(self) -> dict:
        code, body = self.http("GET", "/api/status")
        assert code == 200, body
        return json.loads(body)

    def metrics(self) -> dict:
        code, body = self.http("GET", "/metrics")
        assert code == 200, body
        out = {}
        for line in body.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
        return out

    # ---- clients
    def login(self, user: str, source_ip: Optional[str] = None, **kw) -> SourceIMAP4:
        return imap_login(self.imap_port, user, source_ip=source_ip, **kw)

    def raw(self, tls: bool = False, **kw) -> RawIMAP:
        """A raw client on the imap port, or with tls=True on the imaps port."""
        return RawIMAP(self.imaps_port if tls else self.imap_port, tls=tls, **kw)


# --------------------------------------------------------------------------- Cassandra

CASSANDRA_SCRIPT = os.path.join(REPO, "scripts", "cassandra")
CASSANDRA_USER = CASSANDRA_PASSWORD = "cassandra"  # the superuser of a node started with --auth
CASSANDRA_PAGE_SIZE = 100  # small: with group_count 256, group lists come in several pages
CASSANDRA_START_TIMEOUT = 240  # scripts/cassandra start --timeout (a start takes ~7-10 s)
CASSANDRA_FETCH_TIMEOUT = 2000  # a cold fetch takes ~70 s; Maven gets 2 x 900 s at most


def cassandra_script(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, CASSANDRA_SCRIPT] + list(args), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def mem_available_mb() -> Optional[int]:
    """MemAvailable from /proc/meminfo in MiB; None if it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def cassandra_run(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """cassandra_script(), a hang raised as RuntimeError naming the command."""
    try:
        return cassandra_script(*args, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"scripts/cassandra {' '.join(args)} hung for {timeout} s: "
                           f"{e.stdout!r} {e.stderr!r}")


def cassandra_check(r: subprocess.CompletedProcess, what: str, directory: str) -> None:
    """Raise RuntimeError with the script's output when it failed."""
    if r.returncode != 0:
        raise RuntimeError(f"scripts/cassandra {what} failed (exit {r.returncode}, dir "
                           f"{directory})\n---- stdout\n{r.stdout[-5000:]}\n---- stderr\n"
                           f"{r.stderr[-10000:]}")


def two_dc_roles(cql_superuser, rows, roles: dict) -> None:
    """system_auth replicated to both data centres (else a node cut off from the one holding
    the role rows cannot log anyone in) and roles (name -> (user, password)) created on node
    1 as the built-in superuser (cql_superuser(statement)); waits until every role can read
    its own row on both nodes (rows(n, statement, role) raising RuntimeError on refusal)."""
    cql_superuser("ALTER KEYSPACE system_auth WITH replication = {'class': "
                  "'NetworkTopologyStrategy', 'dc1': 1, 'dc2': 1}")
    for user, password in roles.values():
        cql_superuser(f"CREATE ROLE IF NOT EXISTS {user} WITH PASSWORD = '{password}' AND "
                      "LOGIN = true AND SUPERUSER = true")

    def roles_usable():
        for role, (user, _) in roles.items():
            for n in (1, 2):
                try:
                    found = rows(n, f"SELECT role FROM system_auth.roles WHERE role = '{user}'",
                                 role)
                except RuntimeError:
                    return False
                if [r["role"] for r in found] != [user]:
                    return False
        return True
    wait_for(roles_usable, 60, interval=0.5, message="our roles to be usable on both nodes")


def stop_daemons(daemons) -> list[str]:
    """Stop each daemon (by PID); what went wrong: a daemon that had died on its own, or
    one that did not exit 0 on SIGTERM."""
    problems = []
    for d in daemons:
        if d.proc is not None and d.proc.poll() is not None:
            problems.append(f"{d.name} died during the test (exit {d.proc.returncode})")
            d.proc = None
        rc = d.stop()
        if rc not in (0, None):
            problems.append(f"{d.name} exited with {rc} on SIGTERM")
    return problems


def cassandra_address_free(ip: str, cql_port: int) -> bool:
    """Nothing listens on ip's CQL port nor on its storage port (7000, fixed by the script)."""
    return not port_accepts(ip, cql_port, 0.3) and not port_accepts(ip, 7000, 0.3)


_keyspace_seq = 0


def unique_keyspace(prefix: str = "mc") -> str:
    """A fresh CQL keyspace name (letters, digits, _; at most 48 characters)."""
    global _keyspace_seq
    _keyspace_seq += 1
    name = re.sub(r"[^a-z0-9_]", "_", prefix.lower())[:24]
    return f"{name}_{os.getpid()}_{_keyspace_seq}"


class CassandraNode:
    """One real Cassandra 5.0 node run by scripts/cassandra on a loopback address, with
    PasswordAuthenticator (cassandra/cassandra) and, with tls_dir, optional TLS on its CQL
    port (plain and TLS on the same port; ca_file verifies the node's certificate, whose SAN
    is IP:host).

    start()/stop() are for nodes a test module owns (e.g. an outage test); the session's
    shared node (fixture cassandra_node) must not be stopped or restarted by tests."""

    def __init__(self, directory: str, host: str, port: int, tls_dir: Optional[str] = None,
                 heap: str = "512M"):
        self.dir = directory
        self.host = host
        self.port = port
        self.username = CASSANDRA_USER
        self.password = CASSANDRA_PASSWORD
        self.tls_dir = tls_dir
        self.heap = heap
        self.ca_file: Optional[str] = None
        self.start_seconds: Optional[float] = None  # how long the last start() took

    def start_args(self) -> list:
        args = ["start", "--dir", self.dir, "--ip", self.host, "--cql-port", str(self.port),
                "--auth", "--heap", self.heap, "--timeout", str(CASSANDRA_START_TIMEOUT)]
        if self.tls_dir:
            args += ["--tls-dir", self.tls_dir]
        return args

    def start(self) -> None:
        """Start the node (fetching Cassandra first if needed) and wait until CQL answers.
        Raises RuntimeError with the script's output if it cannot: Java, Maven or Cassandra
        missing is a failure, never a skip."""
        t0 = time.monotonic()
        try:
            r = cassandra_script(*self.start_args(), timeout=CASSANDRA_START_TIMEOUT + 60)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"scripts/cassandra start {self.host}:{self.port} hung: "
                               f"{e.stdout!r} {e.stderr!r}")
        if r.returncode != 0:
            raise RuntimeError(
                f"could not start Cassandra on {self.host}:{self.port} (dir {self.dir}) with "
                f"scripts/cassandra (exit {r.returncode}); Cassandra is part of the normal test "
                f"suite: run 'make deps' (Java 17 + Maven) and 'scripts/cassandra fetch'.\n"
                f"---- stdout\n{r.stdout[-5000:]}\n---- stderr\n{r.stderr[-10000:]}")
        self.start_seconds = time.monotonic() - t0
        if self.tls_dir:
            self.ca_file = os.path.join(self.tls_dir, "ca.pem")
            assert os.path.exists(self.ca_file), r.stdout

    def stop(self, kill: bool = False, timeout: float = 60) -> None:
        """Stop the node by the PID in its directory (scripts/cassandra stop checks that the
        PID is this directory's CassandraDaemon); kill: SIGKILL at once (an outage)."""
        args = ["stop", "--dir", self.dir, "--timeout", str(timeout)] + (["--kill"] if kill else [])
        r = cassandra_script(*args, timeout=timeout + 30)
        if r.returncode != 0:
            raise RuntimeError(f"scripts/cassandra stop {self.dir}: {r.stdout}{r.stderr}")

    def pid(self) -> Optional[int]:
        try:
            with open(os.path.join(self.dir, "pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def is_answering(self) -> bool:
        return port_accepts(self.host, self.port, 0.5)

    def spec(self, keyspace: str, **extra) -> str:
        """The geodb setting for this node: cassandra:hosts=H;port=P;keyspace=K;username=..;
        password=..;page_size=..; extra keys (local_dc=, tls=, tls_ca=, request_timeout=,
        page_size=, ...) are appended or replace the defaults; True/False become yes/no."""
        fields = {"hosts": self.host, "port": str(self.port), "keyspace": keyspace,
                  "username": self.username, "password": self.password,
                  "page_size": str(CASSANDRA_PAGE_SIZE)}
        for k, v in extra.items():
            fields[k] = ("yes" if v else "no") if isinstance(v, bool) else str(v)
        return "cassandra:" + ";".join(f"{k}={v}" for k, v in fields.items())

    def cql(self, statement: str, tls: bool = False, timeout: float = 30) -> str:
        """Run one CQL statement with the script's built-in client; returns its output
        (a header line and tab-separated rows)."""
        args = ["cql", "--host", self.host, "--port", str(self.port), "--user", self.username,
                "--password", self.password]
        if tls:
            args += ["--tls-ca", self.ca_file]
        r = cassandra_script(*(args + [statement]), timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"CQL {statement!r} failed: {r.stderr.strip()}")
        return r.stdout


def start_cassandra_node(root: str, preferred_ip: str, port: int, tls: bool = False,
                         spare_ips: tuple = ()) -> CassandraNode:
    """Fetch Cassandra (bounded, its time shown) and start a node in root/node on the first of
    preferred_ip + spare_ips whose CQL and storage ports are free (another engineer's test
    session may hold one)."""
    r = cassandra_script("fetch", timeout=CASSANDRA_FETCH_TIMEOUT)
    if r.returncode != 0:
        raise RuntimeError("scripts/cassandra fetch failed; Cassandra is part of the normal "
                           "test suite: run 'make deps' (Java 17 + Maven).\n"
                           f"{r.stdout[-3000:]}{r.stderr[-5000:]}")
    busy = []
    for ip in [preferred_ip] + list(spare_ips):
        if not cassandra_address_free(ip, port):
            busy.append(ip)
            continue
        node = CassandraNode(os.path.join(root, "node"), ip, port,
                             tls_dir=os.path.join(root, "tls") if tls else None)
        node.start()
        return node
    raise RuntimeError(f"no free address for a Cassandra node: CQL port {port} or storage port "
                       f"7000 busy on {busy} (stray nodes? see 'ps -ef | grep CassandraDaemon')")


def login_lands_on(daemon: Daemon, user: str) -> str:
    c = daemon.login(user)
    try:
        return backend_of(c)
    finally:
        close_quietly(c)


def backend_log_has(backend, pattern: str) -> bool:
    return re.search(pattern, backend.log_text()) is not None
