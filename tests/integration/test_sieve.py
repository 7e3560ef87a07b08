"""The ManageSieve front-end (RFC 5804) against real Dovecot/Pigeonhole managesieve-login
backends, with a small real ManageSieve client written here from the RFC: capabilities,
STARTTLS, AUTHENTICATE "PLAIN", scripts uploaded through the proxy landing on the user's
backend (where IMAP and POP3 through the proxy meet them), the client's address forwarded with
XCLIENT, failures passed through, limits, temporary failures and kick."""

from __future__ import annotations

import base64
import concurrent.futures
import os
import poplib
import re
import smtplib
import socket
import time
from typing import Optional

import pytest

from mchelpers import backend_of, close_quietly, unverified_ssl_context, wait_for

PROTOCOLS = ("imap", "pop3", "sieve")
TEMPFAIL = b'NO (TRYLATER) "Account is temporarily unavailable."'


def _plain_ir(user: str, password: str = "password") -> bytes:
    return base64.b64encode(f"\0{user}\0{password}".encode())


def _quoted(s: bytes) -> bytes:
    return b'"' + s.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class ManageSieve:
    """A minimal RFC 5804 client: responses are lines up to OK/NO/BYE; server literals
    {N}\\r\\n are read whole; commands send their scripts as {N+} literals."""

    def __init__(self, port: int, host: str = "127.0.0.1", source_ip: Optional[str] = None,
                 timeout: float = 15, preamble: bytes = b""):
        src = (source_ip, 0) if source_ip else None
        self.sock = socket.create_connection((host, port), timeout=timeout, source_address=src)
        if preamble:
            self.sock.sendall(preamble)
        self.buf = b""
        self.capabilities, self.greeting = self.response()

    # ---- reading
    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed; partial data {self.buf[:200]!r}")
        self.buf += chunk

    def readline(self) -> bytes:
        """One line without CRLF, with any literal it announces appended whole."""
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        m = re.search(rb"\{(\d+)\+?\}$", line)
        if m:
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill()
            line = line[:m.start()] + self.buf[:n]
            self.buf = self.buf[n:]
            line += self.readline()
        return line

    def response(self) -> tuple[list[bytes], bytes]:
        """(data lines, the OK/NO/BYE line)."""
        lines = []
        while True:
            line = self.readline()
            if re.match(rb"(OK|NO|BYE)( |$)", line):
                return lines, line
            lines.append(line)

    def read_to_eof(self, timeout: float = 10) -> bytes:
        data, self.buf = self.buf, b""
        self.sock.settimeout(timeout)
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk

    # ---- commands
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, line: bytes) -> tuple[list[bytes], bytes]:
        self.send(line + b"\r\n")
        return self.response()

    def caps(self, lines: Optional[list[bytes]] = None) -> dict:
        out = {}
        for line in self.capabilities if lines is None else lines:
            m = re.match(rb'"([^"]+)"(?: "([^"]*)")?$', line)
            assert m, line
            out[m.group(1).decode().upper()] = (m.group(2) or b"").decode()
        return out

    def starttls(self) -> bytes:
        _, ok = self.command(b"STARTTLS")
        assert ok.startswith(b"OK"), ok
        assert self.buf == b""
        self.sock = unverified_ssl_context().wrap_socket(self.sock, server_hostname="localhost")
        # RFC 5804 2.2: the server sends its capabilities again, unasked
        self.capabilities, ok = self.response()
        return ok

    def authenticate(self, user: str, password: str = "password",
                     initial_response: bool = True) -> bytes:
        ir = _plain_ir(user, password)
        if initial_response:
            return self.command(b'AUTHENTICATE "PLAIN" ' + _quoted(ir))[1]
        self.send(b'AUTHENTICATE "PLAIN"\r\n')
        challenge = self.readline()
        assert challenge == b'""', challenge
        self.send(b"{%d+}\r\n%s\r\n" % (len(ir), ir))
        return self.response()[1]

    def putscript(self, name: str, script: bytes) -> bytes:
        self.send(b"PUTSCRIPT " + _quoted(name.encode()) + b" {%d+}\r\n" % len(script) +
                  script + b"\r\n")
        return self.response()[1]

    def getscript(self, name: str) -> bytes:
        lines, ok = self.command(b"GETSCRIPT " + _quoted(name.encode()))
        assert ok.startswith(b"OK"), ok
        return lines[0]

    def logout(self) -> None:
        try:
            self.command(b"LOGOUT")
        except (OSError, EOFError):
            pass
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _sieve(d, **kw) -> ManageSieve:
    return ManageSieve(d.ports["sieve"], **kw)


def _backend_of(d, fleet, user):
    return fleet.backend(d.cli_json("user", "access", user)[0]["backend"])


# --------------------------------------------------------------------------- greeting etc.


def test_greeting_capability_noop_logout(cluster):
    d = cluster(tls=True, protocols=PROTOCOLS)
    c = _sieve(d)
    try:
        assert c.greeting == b'OK "mailcluster ready."', c.greeting
        assert c.capabilities == [b'"IMPLEMENTATION" "mailcluster"', b'"SASL" "PLAIN"',
                                  b'"STARTTLS"', b'"VERSION" "1.0"'], c.capabilities
        lines, ok = c.command(b"CAPABILITY")
        assert lines == c.capabilities and ok.startswith(b"OK"), (lines, ok)
        assert c.command(b"NOOP")[1].startswith(b"OK")
        assert c.command(b'NOOP "sync-42"')[1] == b'OK (TAG "sync-42") "Done"'
        assert c.command(b'noop "a\\"b"')[1] == b'OK (TAG "a\\"b") "Done"'
        c.send(b"LOGOUT\r\n")
        assert c.read_to_eof() == b'OK "Logout completed."\r\n'
    finally:
        c.close()


def test_starttls_resends_capabilities_then_login(cluster, fleet):
    d = cluster(tls=True, protocols=PROTOCOLS)
    user = "user231"
    c = _sieve(d)
    try:
        assert "STARTTLS" in c.caps()
        ok = c.starttls()
        assert ok.startswith(b"OK"), ok
        assert "STARTTLS" not in c.caps() and c.caps()["SASL"] == "PLAIN", c.capabilities
        assert c.command(b"STARTTLS")[1].startswith(b"NO")
        assert c.authenticate(user).startswith(b"OK")
        lines, ok = c.command(b"CAPABILITY")  # the backend's now
        assert ok.startswith(b"OK") and "SIEVE" in c.caps(lines), lines
    finally:
        c.logout()
    assert re.search(r"event=login result=ok protocol=sieve user=user231 .* tls=yes",
                     d.log_text()), d.log_text()


def test_authenticate_without_initial_response_and_abort(cluster):
    d = cluster(protocols=PROTOCOLS)
    c = _sieve(d)
    try:
        c.send(b'AUTHENTICATE "PLAIN"\r\n')
        assert c.readline() == b'""'
        c.send(b'"*"\r\n')
        _, no = c.response()
        assert no.startswith(b'NO "Authentication aborted'), no
        assert c.command(b'AUTHENTICATE "DIGEST-MD5"')[1].startswith(b"NO")
        assert c.authenticate("user232", initial_response=False).startswith(b"OK")
        lines, ok = c.command(b"LISTSCRIPTS")
        assert ok.startswith(b"OK"), ok
    finally:
        c.logout()


# --------------------------------------------------------------------------- one backend per user


def test_script_lands_on_the_users_backend_where_imap_and_pop3_meet_it(cluster, fleet):
    """A user's ManageSieve, POP3 and IMAP sessions through the proxy all reach one backend;
    the script uploaded through the proxy is stored there, is active there, and filters mail
    delivered there into a folder that IMAP through the proxy then shows."""
    d = cluster(protocols=PROTOCOLS)
    user = "user233"
    backend = _backend_of(d, fleet, user)
    name = f"mc-{os.getpid()}-{int(time.time())}"
    script = (b'require ["fileinto", "mailbox"];\r\n'
              b'if header :contains "subject" "sieve-through-proxy" {\r\n'
              b'  fileinto :create "Filtered";\r\n'
              b'}\r\n')
    c = _sieve(d, source_ip="127.0.0.90")
    pop = imap = None
    try:
        assert c.authenticate(user).startswith(b"OK")
        assert c.putscript(name, script).startswith(b"OK")
        assert c.command(b"SETACTIVE " + _quoted(name.encode()))[1].startswith(b"OK")
        lines, ok = c.command(b"LISTSCRIPTS")
        assert _quoted(name.encode()) + b" ACTIVE" in lines, lines

        # POP3 and IMAP for the same user while the ManageSieve session is open
        pop = poplib.POP3("127.0.0.1", d.ports["pop3"], timeout=20)
        pop.user(user)
        pop.pass_("password")
        imap = d.login(user)
        assert backend_of(imap) == backend.name
        rows = d.cli_json("who", user)
        assert sorted(r["protocol"] for r in rows) == ["imap", "pop3", "sieve"], rows
        assert {r["backend"] for r in rows} == {backend.name}, rows
    finally:
        c.logout()
        if pop is not None:
            pop.quit()

    # stored on that backend, in the user's sieve dir, and active
    path = os.path.join(backend.dir, "home", user, "sieve", name + ".sieve")
    with open(path, "rb") as f:
        assert f.read() == script
    active = os.path.join(backend.dir, "home", user, ".dovecot.sieve")
    assert os.path.basename(os.readlink(active)) == name + ".sieve"
    for other in fleet.backends:
        if other is not backend:
            assert not os.path.exists(os.path.join(other.dir, "home", user, "sieve",
                                                   name + ".sieve"))

    # ... and read back through the proxy again
    c = _sieve(d)
    try:
        assert c.authenticate(user).startswith(b"OK")
        assert c.getscript(name) == script
    finally:
        c.logout()

    # mail delivered on that backend is filtered by it; IMAP through the proxy shows it
    with smtplib.LMTP(backend.ip, backend.ports["lmtp"], timeout=20) as lmtp:
        lmtp.sendmail("sender@example.com", [user],
                      f"From: sender@example.com\r\nTo: {user}\r\n"
                      f"Subject: sieve-through-proxy {name}\r\n\r\nhello\r\n")
    try:
        def filtered():
            imap.noop()
            typ, data = imap.select("Filtered", readonly=True)
            return typ == "OK" and int(data[0]) >= 1
        wait_for(filtered, 10, interval=0.2, message="the message in Filtered")
        typ, data = imap.search(None, "SUBJECT", name)
        assert typ == "OK" and data[0].split(), data
    finally:
        close_quietly(imap)


def test_backend_logs_the_real_client_address(cluster, fleet):
    d = cluster(protocols=PROTOCOLS)
    user = "user234"
    c = _sieve(d, source_ip="127.0.0.91")
    try:
        assert c.authenticate(user).startswith(b"OK")
    finally:
        c.logout()
    m = re.search(r"event=login result=ok protocol=sieve user=user234 .*session=(\S+)",
                  d.log_text())
    assert m, d.log_text()
    backend = _backend_of(d, fleet, user)
    wait_for(lambda: re.search(
        rf"managesieve-login: Info: Login: user=<{user}>, method=PLAIN, rip=127\.0\.0\.91, "
        rf".*session=<{re.escape(m.group(1))}>", backend.log_text()),
        10, message=f"rip=127.0.0.91 and our session id for {user} in {backend.name}'s log")


# --------------------------------------------------------------------------- failures


def test_wrong_password_is_the_backends_answer_until_the_limit(cluster, fleet):
    d = cluster(protocols=PROTOCOLS, proxy_timeout="30s")  # Dovecot delays failures ~2s
    user = "user235"
    backend = _backend_of(d, fleet, user)

    def direct_wrong_login():
        direct = ManageSieve(backend.ports["sieve"], host=backend.ip, source_ip="127.0.0.92",
                             timeout=40)
        try:
            return direct.authenticate(user, "wrong-password")
        finally:
            direct.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        direct_future = pool.submit(direct_wrong_login)
        replies = []
        c = _sieve(d, source_ip="127.0.0.93", timeout=40)
        try:
            for _ in (1, 2):
                replies.append(c.authenticate(user, "wrong-password"))
                assert c.command(b"NOOP")[1].startswith(b"OK")  # still usable
            c.send(b'AUTHENTICATE "PLAIN" ' + _quoted(_plain_ir(user, "wrong")) + b"\r\n")
            last = c.read_to_eof(timeout=40)
        finally:
            c.close()
        direct_reply = direct_future.result(timeout=60)
    assert direct_reply == b'NO "Authentication failed."', direct_reply
    assert replies == [direct_reply, direct_reply], replies
    assert last == direct_reply + b'\r\nBYE "Too many invalid authentication attempts."\r\n', last
    m = d.metrics()
    assert m['mailcluster_logins_total{result="failed"}'] == 3, m


def test_unreachable_backend_gives_trylater(cluster):
    d = cluster(protocols=PROTOCOLS, proxy_timeout="2s", proxy_connect_retry="500ms")
    assert d.cli("backend", "add", "--site", "dc1", "ghost", "127.0.3.14").returncode == 0
    assert d.cli("backend", "update", "--status", "online", "ghost").returncode == 0
    user = "user236"
    group = d.cli_json("user", "status", user)[0]["group"]
    assert d.cli("group", "move", "--direct", str(group), "ghost").returncode == 0
    c = _sieve(d, timeout=20)
    try:
        assert c.authenticate(user) == TEMPFAIL
        assert c.command(b"NOOP")[1].startswith(b"OK")  # back in pre-login
    finally:
        c.close()
    m = d.metrics()
    assert m['mailcluster_logins_total{result="unavailable"}'] == 1, m
    assert "event=login result=unavailable protocol=sieve user=user236" in d.log_text()


def test_plaintext_refused_on_insecure_connection_until_starttls(cluster):
    d = cluster(tls=True, protocols=PROTOCOLS, haproxy=("sieve",),
                haproxy_trusted_networks="127.0.0.0/8")
    c = _sieve(d, preamble=b"PROXY TCP4 203.0.113.8 198.51.100.1 40001 4190\r\n")
    try:
        assert c.caps()["SASL"] == "" and "STARTTLS" in c.caps(), c.capabilities
        no = c.authenticate("user237")
        assert no == (b'NO (ENCRYPT-NEEDED) "Plaintext authentication disallowed on '
                      b'non-secure (SSL/TLS) connections."'), no
        c.starttls()
        assert c.caps()["SASL"] == "PLAIN", c.capabilities
        assert c.authenticate("user237").startswith(b"OK")
    finally:
        c.logout()
    assert "client=203.0.113.8:40001" in d.log_text()


# --------------------------------------------------------------------------- limits


def test_garbage_gets_no_until_the_limit_then_bye(cluster):
    d = cluster(protocols=PROTOCOLS)
    junk = [b"\x00\x01\x02\r\n", b"\xff\xfe garbage\r\n", b"\r\n", b'"unterminated\r\n',
            b"LISTSCRIPTS\r\n", b'PUTSCRIPT "x" {3+}\r\nabc\r\n', b"FROBNICATE\r\n",
            b"AUTHENTICATE\r\n", b"NOOP 1 2\r\n"]
    c = _sieve(d)
    try:
        for j in junk:
            c.send(j)
            _, line = c.response()
            assert line.startswith(b"NO "), (j, line)
        c.send(b"HAVESPACE \"x\" 1\r\n")  # the 10th
        data = c.read_to_eof()
    finally:
        c.close()
    assert data == b'BYE "Too many invalid commands."\r\n', data
    assert d.metrics()["mailcluster_prelogin_bad_commands_total"] == 10


@pytest.mark.parametrize("data", [
    b"NOOP " + b"x" * 3000 + b"\r\n",
    b'PUTSCRIPT "x" {100000+}\r\n',
    b"AUTHENTICATE \"PLAIN\"\r\n\"" + b"A" * 3000 + b"\"\r\n",
])
def test_too_long_command_gets_bye(cluster, data):
    d = cluster(protocols=PROTOCOLS, prelogin_line_max="1k")
    c = _sieve(d)
    try:
        try:
            c.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = c.read_to_eof()
    finally:
        c.close()
    assert got.endswith(b'BYE "Line too long."\r\n'), got
    assert d.metrics()["mailcluster_prelogin_too_long_total"] == 1


def test_idle_client_is_disconnected(cluster):
    d = cluster(protocols=PROTOCOLS, prelogin_timeout="1s")
    c = _sieve(d)
    try:
        assert c.read_to_eof(timeout=10) == b'BYE "Disconnected for inactivity."\r\n'
    finally:
        c.close()
    assert d.metrics()["mailcluster_prelogin_timeouts_total"] == 1


# --------------------------------------------------------------------------- kick


def test_kick_ends_a_sieve_session_with_bye(cluster):
    d = cluster(protocols=PROTOCOLS)
    user = "user238"
    c = _sieve(d)
    try:
        assert c.authenticate(user).startswith(b"OK")
        rows = d.cli_json("who", user)
        assert [r["protocol"] for r in rows] == ["sieve"], rows
        assert d.cli("kick", user).returncode == 0
        assert c.read_to_eof() == b'BYE "Disconnected by the administrator."\r\n'
    finally:
        c.close()
    wait_for(lambda: d.cli_json("who") == [], 10, message="no sessions after kick")
