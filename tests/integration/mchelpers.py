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
import time
import urllib.request
from typing import Callable, Optional

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# MAILCLUSTERD lets the suite run against another build (e.g. a sanitizer one)
DAEMON = os.environ.get("MAILCLUSTERD", os.path.join(REPO, "build", "mailclusterd"))
CLI = os.path.join(REPO, "build", "mailcluster")

FLEET_FIRST_IP = "127.0.3.2"
FLEET_PORTS = {"imap": 35300, "pop3": 35310, "lmtp": 35320, "sieve": 35340, "submission": 35350}
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


class Daemon:
    """One mailclusterd process with its config file and log."""

    # listeners that are implicit TLS, and the plain one whose port they mirror
    IMPLICIT_TLS = {"imaps": "imap", "pop3s": "pop3", "submissions": "submission"}

    def __init__(self, workdir: str, geodb_path: str, fleet, extra: Optional[dict] = None,
                 tls: Optional[tuple[str, str]] = None, name: str = "mc",
                 protocols: tuple = ("imap",), haproxy: tuple = ()):
        """protocols: the plain listeners to open (imap, pop3, lmtp, sieve, submission); with
        tls, the implicit-TLS twins (imaps, pop3s, submissions) of those are opened too.
        self.ports maps every opened listener name to its port.  haproxy: listener names that
        get haproxy = yes (set haproxy_trusted_networks in extra)."""
        self.workdir = workdir
        self.name = name
        self.geodb_path = geodb_path
        self.fleet = fleet
        listeners = list(protocols)
        if tls:
            listeners += [t for t, plain in self.IMPLICIT_TLS.items() if plain in protocols]
        self.ports = {listener: free_port() for listener in listeners}
        self.imap_port = self.ports.get("imap")
        self.imaps_port = self.ports.get("imaps")
        self.admin_port = free_port()
        self.config = os.path.join(workdir, f"{name}.conf")
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.proc: Optional[subprocess.Popen] = None
        settings = {
            "site": SITE,
            "geodb": f"sqlite:{geodb_path}",
            "localdb": os.path.join(workdir, f"{name}-localdb.sqlite"),
            "group_count": "256",
            "admin_listen": f"127.0.0.1:{self.admin_port}",
            "proxy_timeout": "3s",
            "plaintext_auth": "tls",
            "log_level": "info",
        }
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
        """site add + every fleet backend added and put online."""
        for args in [("site", "add", SITE)] + \
                [("backend", "add", "--site", SITE, b.name, b.ip) for b in self.fleet.backends] + \
                [("backend", "update", "--status", "online", b.name) for b in self.fleet.backends]:
            r = self.cli(*args)
            assert r.returncode == 0, f"mailcluster {' '.join(args)}: {r.stderr}"

    def start(self, timeout: float = 15) -> None:
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


def login_lands_on(daemon: Daemon, user: str) -> str:
    c = daemon.login(user)
    try:
        return backend_of(c)
    finally:
        close_quietly(c)


def backend_log_has(backend, pattern: str) -> bool:
    return re.search(pattern, backend.log_text()) is not None
