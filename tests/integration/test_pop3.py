"""The POP3 front-end (RFC 1939, 2449, 5034) against real Dovecot pop3-login backends: CAPA,
USER/PASS, AUTH PLAIN, STLS and pop3s with Python's poplib, the client's address forwarded
with XCLIENT, failures passed through, limits, temporary failures and kick."""

from __future__ import annotations

import base64
import concurrent.futures
import poplib
import re
import socket
import ssl
import threading

import pytest

from mchelpers import RawIMAP, unverified_ssl_context, wait_for

PROTOCOLS = ("imap", "pop3", "sieve")
TEMPFAIL = b"-ERR [SYS/TEMP] Account is temporarily unavailable."


def _plain_ir(user: str, password: str = "password") -> bytes:
    return base64.b64encode(f"\0{user}\0{password}".encode())


class RawPOP3(RawIMAP):
    """A raw line client on a POP3 port (RawIMAP's line reading; greeting read on connect,
    after preamble, e.g. a PROXY header, has been sent)."""

    def __init__(self, port: int, host: str = "127.0.0.1", source_ip=None, timeout: float = 15,
                 tls: bool = False, preamble: bytes = b""):
        src = (source_ip, 0) if source_ip else None
        self.sock = socket.create_connection((host, port), timeout=timeout, source_address=src)
        if tls:
            self.sock = unverified_ssl_context().wrap_socket(self.sock,
                                                             server_hostname="localhost")
        if preamble:
            self.sock.sendall(preamble)
        self.buf = b""
        self.greeting = self.readline()

    def multiline(self) -> list[bytes]:
        """The lines of a multi-line answer after its +OK line, up to the "." line."""
        lines = []
        while True:
            line = self.readline()
            if line == b".\r\n":
                return lines
            lines.append(line[:-2])


def _raw(d, tls: bool = False, **kw) -> RawPOP3:
    return RawPOP3(d.ports["pop3s" if tls else "pop3"], tls=tls, **kw)


def _backend_of(d, fleet, user):
    return fleet.backend(d.cli_json("user", "access", user)[0]["backend"])


def _pop3(d, source_ip=None, timeout=20) -> poplib.POP3:
    p = poplib.POP3("127.0.0.1", d.ports["pop3"], timeout=timeout)
    if source_ip:  # poplib has no source address: reconnect the socket ourselves
        p.sock.close()
        p.sock = socket.create_connection(("127.0.0.1", d.ports["pop3"]), timeout,
                                          source_address=(source_ip, 0))
        p.file = p.sock.makefile("rb")
        p.welcome = p._getresp()
    return p


def _message_stored_on(p: poplib.POP3) -> str:
    """Which backend the fleet's first message says it was stored on."""
    _, lines, _ = p.retr(1)
    m = re.search(rb"stored on (backend\d+)", b"\n".join(lines))
    assert m, lines
    return m.group(1).decode()


# --------------------------------------------------------------------------- greeting, CAPA


def test_greeting_capa_and_quit(cluster):
    d = cluster(tls=True, protocols=PROTOCOLS)
    r = _raw(d)
    try:
        assert r.greeting == b"+OK mailcluster ready.\r\n", r.greeting
        r.send(b"CAPA\r\n")
        assert r.readline().startswith(b"+OK")
        caps = r.multiline()
        for cap in (b"USER", b"SASL PLAIN", b"STLS", b"PIPELINING", b"RESP-CODES",
                    b"AUTH-RESP-CODE"):
            assert cap in caps, (cap, caps)
        r.send(b"AUTH\r\n")  # the mechanism list
        assert r.readline().startswith(b"+OK") and r.multiline() == [b"PLAIN"]
        r.send(b"QUIT\r\n")
        assert r.read_to_eof() == b"+OK Logging out.\r\n"
    finally:
        r.close()
    # over pop3s there is no STLS
    r = _raw(d, tls=True)
    try:
        assert r.greeting.startswith(b"+OK")
        r.send(b"capa\r\n")  # keywords are case-insensitive
        assert r.readline().startswith(b"+OK")
        caps = r.multiline()
        assert b"STLS" not in caps and b"USER" in caps, caps
    finally:
        r.close()


def test_capa_without_tls_configured_has_no_stls(cluster):
    d = cluster(protocols=PROTOCOLS)
    p = _pop3(d)
    try:
        caps = p.capa()
        assert "STLS" not in caps and "USER" in caps and caps["SASL"] == ["PLAIN"], caps
        with pytest.raises(poplib.error_proto, match="TLS support isn't enabled"):
            p._shortcmd("STLS")
    finally:
        p.quit()


# --------------------------------------------------------------------------- logins


def test_user_pass_reaches_the_users_backend(cluster, fleet):
    d = cluster(protocols=PROTOCOLS)
    user = "user201"
    p = _pop3(d)
    try:
        assert p.getwelcome() == b"+OK mailcluster ready."
        assert p.user(user) == b"+OK"
        assert p.pass_("password").startswith(b"+OK")
        count, size = p.stat()
        assert count == 3 and size > 0, (count, size)
        assert _message_stored_on(p) == _backend_of(d, fleet, user).name
        # after login CAPA is the backend's
        assert "TOP" in p.capa()
        rows = d.cli_json("who", user)
        assert [r["protocol"] for r in rows] == ["pop3"], rows
    finally:
        assert p.quit().startswith(b"+OK")
    wait_for(lambda: d.cli_json("who", user) == [], 10, message="the session to end")
    assert "event=login result=ok protocol=pop3 user=user201" in d.log_text()
    assert re.search(r"event=session_end protocol=pop3 user=user201 .*reason=", d.log_text())
    m = d.metrics()
    assert m['mailcluster_logins_total{result="ok"}'] == 1, m


def test_auth_plain_with_and_without_initial_response(cluster, fleet):
    d = cluster(protocols=PROTOCOLS)
    user = "user202"
    r = _raw(d)
    try:
        r.send(b"AUTH PLAIN " + _plain_ir(user) + b"\r\n")
        assert r.readline().startswith(b"+OK"), "AUTH PLAIN with initial response"
        r.send(b"STAT\r\n")
        assert re.match(rb"\+OK 3 \d+\r\n", r.readline())
    finally:
        r.close()
    r = _raw(d)
    try:
        r.send(b"AUTH PLAIN\r\n")
        assert r.readline() == b"+ \r\n"
        r.send(b"*\r\n")  # cancels
        assert r.readline().startswith(b"-ERR")
        r.send(b"AUTH PLAIN\r\n")
        assert r.readline() == b"+ \r\n"
        r.send(_plain_ir(user) + b"\r\n")
        assert r.readline().startswith(b"+OK")
        r.send(b"LIST\r\n")
        assert r.readline().startswith(b"+OK") and len(r.multiline()) == 3
    finally:
        r.close()
    # poplib's own SASL support sends the same thing
    p = _pop3(d)
    try:
        assert p._shortcmd("AUTH PLAIN " + _plain_ir(user).decode()).startswith(b"+OK")
        assert p.stat()[0] == 3
    finally:
        p.quit()


def test_unsupported_mechanism_and_bad_sasl(cluster):
    d = cluster(protocols=PROTOCOLS, proxy_timeout="30s")
    r = _raw(d, source_ip="127.0.0.70", timeout=40)
    try:
        r.send(b"AUTH CRAM-MD5\r\n")
        assert r.readline().startswith(b"-ERR [AUTH] Unsupported")
        r.send(b"AUTH PLAIN !!notbase64!!\r\n")
        assert r.readline().startswith(b"-ERR [AUTH] Authentication failed")
        r.send(b"PASS password\r\n")  # no USER first
        assert r.readline().startswith(b"-ERR")
        r.send(b"USER user203\r\nPASS password\r\nSTAT\r\n")  # still usable
        assert r.readline() == b"+OK\r\n"
        assert r.readline().startswith(b"+OK")
        assert r.readline().startswith(b"+OK 3 ")
    finally:
        r.close()


def test_pipelined_login_and_commands(cluster):
    """PIPELINING is advertised: commands in one write are answered in order, the pre-login
    ones by the proxy and the rest by the backend."""
    d = cluster(protocols=PROTOCOLS)
    r = _raw(d)
    try:
        r.send(b"CAPA\r\nUSER user204\r\nPASS password\r\nSTAT\r\nUIDL\r\nQUIT\r\n")
        data = r.read_to_eof(timeout=15)
    finally:
        r.close()
    capa, rest = data.split(b"\r\n.\r\n", 1)
    assert capa.startswith(b"+OK\r\n") and b"PIPELINING" in capa, capa
    lines = rest.split(b"\r\n")
    assert lines[0] == b"+OK" and lines[1].startswith(b"+OK"), lines  # USER, PASS
    assert re.match(rb"\+OK 3 \d+", lines[2]), lines  # STAT from the backend
    assert lines[3].startswith(b"+OK") and lines[7] == b".", lines  # UIDL's 3 lines
    assert lines[8].startswith(b"+OK") and lines[9:] == [b""], lines  # QUIT


def test_stls_then_login(cluster, fleet):
    d = cluster(tls=True, protocols=PROTOCOLS)
    user = "user205"
    p = _pop3(d)
    try:
        assert "STLS" in p.capa()
        assert p.stls(unverified_ssl_context()).startswith(b"+OK")
        assert isinstance(p.sock, ssl.SSLSocket)
        assert "STLS" not in p.capa()
        p.user(user)
        p.pass_("password")
        assert _message_stored_on(p) == _backend_of(d, fleet, user).name
        with pytest.raises(poplib.error_proto):  # the backend's answer now
            p._shortcmd("STLS")
    finally:
        p.quit()
    wait_for(lambda: "event=login result=ok protocol=pop3 user=user205" in d.log_text(), 5,
             message="login logged")
    assert re.search(r"event=login result=ok protocol=pop3 user=user205 .* tls=yes",
                     d.log_text())


def test_stls_drops_input_pipelined_after_it(cluster):
    d = cluster(tls=True, protocols=PROTOCOLS)
    r = _raw(d)
    try:
        r.send(b"STLS\r\nUSER injected\r\nPASS password\r\n")
        assert r.readline() == b"+OK Begin TLS negotiation now.\r\n"
        assert r.buf == b""
        r.sock = unverified_ssl_context().wrap_socket(r.sock, server_hostname="localhost")
        r.send(b"PASS password\r\n")  # the plaintext USER was dropped, so no user is known
        assert r.readline().startswith(b"-ERR No username")
        r.send(b"STLS\r\n")
        assert r.readline().startswith(b"-ERR TLS is already active")
    finally:
        r.close()
    assert "user=injected" not in d.log_text()


def test_pop3s_login(cluster, fleet):
    d = cluster(tls=True, protocols=PROTOCOLS)
    user = "user206"
    p = poplib.POP3_SSL("127.0.0.1", d.ports["pop3s"], context=unverified_ssl_context(),
                        timeout=20)
    try:
        assert p.getwelcome().startswith(b"+OK")
        p.user(user)
        p.pass_("password")
        assert p.stat()[0] == 3
        assert _message_stored_on(p) == _backend_of(d, fleet, user).name
    finally:
        p.quit()


def test_plaintext_refused_on_insecure_connection_until_stls(cluster):
    """A client that is not on loopback (here: the address a PROXY header gives) must not
    send a password in the clear: USER and AUTH PLAIN are refused until STLS."""
    d = cluster(tls=True, protocols=PROTOCOLS, haproxy=("pop3",),
                haproxy_trusted_networks="127.0.0.0/8")
    r = _raw(d, preamble=b"PROXY TCP4 203.0.113.7 198.51.100.1 40000 110\r\n")
    try:
        assert r.greeting.startswith(b"+OK")
        r.send(b"CAPA\r\n")
        r.readline()
        caps = r.multiline()
        assert b"USER" not in caps and b"SASL" in caps and b"SASL PLAIN" not in caps, caps
        assert b"STLS" in caps, caps
        disallowed = (b"-ERR [AUTH] Plaintext authentication disallowed on non-secure "
                      b"(SSL/TLS) connections.\r\n")
        r.send(b"USER user207\r\n")
        assert r.readline() == disallowed
        r.send(b"AUTH PLAIN " + _plain_ir("user207") + b"\r\n")
        assert r.readline() == disallowed
        r.send(b"STLS\r\n")
        assert r.readline().startswith(b"+OK")
        r.sock = unverified_ssl_context().wrap_socket(r.sock, server_hostname="localhost")
        r.send(b"USER user207\r\nPASS password\r\nSTAT\r\n")
        assert r.readline() == b"+OK\r\n"
        assert r.readline().startswith(b"+OK")
        assert r.readline().startswith(b"+OK 3 ")
    finally:
        r.close()
    assert d.metrics()['mailcluster_logins_total{result="refused"}'] == 2
    assert "client=203.0.113.7:40000" in d.log_text()


# --------------------------------------------------------------------------- the backend side


def test_backend_logs_the_real_client_address(cluster, fleet):
    d = cluster(protocols=PROTOCOLS)
    user = "user208"
    p = _pop3(d, source_ip="127.0.0.71")
    try:
        p.user(user)
        p.pass_("password")
        p.stat()
    finally:
        p.quit()
    m = re.search(r"event=login result=ok protocol=pop3 user=user208 .*session=(\S+)",
                  d.log_text())
    assert m, d.log_text()
    session = m.group(1)
    backend = _backend_of(d, fleet, user)
    wait_for(lambda: re.search(
        rf"pop3-login: Info: Login: user=<{user}>, method=PLAIN, rip=127\.0\.0\.71, "
        rf".*session=<{re.escape(session)}>", backend.log_text()),
        10, message=f"rip=127.0.0.71 and our session id for {user} in {backend.name}'s log")


def test_wrong_password_is_the_backends_answer_until_the_limit(cluster, fleet):
    d = cluster(protocols=PROTOCOLS, proxy_timeout="30s")  # Dovecot delays failures ~2s
    user = "user209"
    backend = _backend_of(d, fleet, user)

    def direct_wrong_login():
        direct = RawPOP3(backend.ports["pop3"], host=backend.ip, source_ip="127.0.0.72",
                         timeout=40)
        try:
            direct.send(f"USER {user}\r\nPASS wrong-password\r\n".encode())
            assert direct.readline() == b"+OK\r\n"
            return direct.readline()
        finally:
            direct.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        direct_future = pool.submit(direct_wrong_login)
        replies = []
        r = _raw(d, source_ip="127.0.0.73", timeout=40)
        try:
            for _ in (1, 2):
                r.send(f"USER {user}\r\nPASS wrong-password\r\n".encode())
                assert r.readline() == b"+OK\r\n"
                replies.append(r.readline())
                r.send(b"CAPA\r\n")  # still usable after a failure
                assert r.readline().startswith(b"+OK")
                r.multiline()
            r.send(f"AUTH PLAIN {_plain_ir(user, 'wrong').decode()}\r\n".encode())
            last = r.read_to_eof(timeout=40)  # the third failure: the answer, then closed
        finally:
            r.close()
        direct_reply = direct_future.result(timeout=60)
    assert direct_reply.startswith(b"-ERR [AUTH] Authentication failed"), direct_reply
    assert replies == [direct_reply, direct_reply], (replies, direct_reply)
    assert last == direct_reply, last
    m = d.metrics()
    assert m['mailcluster_logins_total{result="failed"}'] == 3, m
    assert m['mailcluster_logins_total{result="ok"}'] == 0, m


def test_unreachable_backend_gives_temporary_failure(cluster):
    d = cluster(protocols=PROTOCOLS, proxy_timeout="2s", proxy_connect_retry="500ms")
    assert d.cli("backend", "add", "--site", "dc1", "ghost", "127.0.3.13").returncode == 0
    assert d.cli("backend", "update", "--status", "online", "ghost").returncode == 0
    user = "user210"
    group = d.cli_json("user", "status", user)[0]["group"]
    assert d.cli("group", "move", "--direct", str(group), "ghost").returncode == 0
    r = _raw(d, timeout=20)
    try:
        r.send(f"USER {user}\r\nPASS password\r\n".encode())
        assert r.readline() == b"+OK\r\n"
        assert r.readline() == TEMPFAIL + b"\r\n"
        r.send(b"CAPA\r\n")  # back in pre-login, usable
        assert r.readline().startswith(b"+OK")
    finally:
        r.close()
    m = d.metrics()
    assert m['mailcluster_logins_total{result="unavailable"}'] == 1, m
    assert m["mailcluster_backend_connect_failures_total"] >= 2, m
    assert "event=login result=unavailable protocol=pop3 user=user210" in d.log_text()


def test_standby_backend_gives_temporary_failure(cluster, fleet):
    d = cluster(protocols=PROTOCOLS)
    user = "user211"
    backend = _backend_of(d, fleet, user)
    assert d.cli("backend", "update", "--status", "standby", backend.name).returncode == 0
    r = _raw(d)
    try:
        r.send(f"AUTH PLAIN {_plain_ir(user).decode()}\r\n".encode())
        assert r.readline() == TEMPFAIL + b"\r\n"
    finally:
        r.close()


# --------------------------------------------------------------------------- limits


def test_garbage_gets_err_until_the_limit(cluster):
    d = cluster(protocols=PROTOCOLS)
    junk = [b"\x00\x01\x02\r\n", b"\xff\xfe garbage\r\n", b"\r\n", b"  \r\n", b"STAT\r\n",
            b"RETR 1\r\n", b"FROBNICATE\r\n", b"USER\r\n", b"USER a  b\r\n"]
    r = _raw(d)
    try:
        for j in junk:
            r.send(j)
            line = r.readline()
            assert line.startswith(b"-ERR "), (j, line)
        r.send(b"NOOP\r\n")  # the 10th
        data = r.read_to_eof()
    finally:
        r.close()
    assert data == b"-ERR Too many invalid commands.\r\n", data
    assert d.metrics()["mailcluster_prelogin_bad_commands_total"] == 10


@pytest.mark.parametrize("data", [
    b"USER " + b"x" * 300 + b"\r\n",  # longer than the 255 of RFC 2449
    b"USER " + b"x" * 20000,  # no line end at all
    b"AUTH PLAIN\r\n" + b"A" * 20000 + b"\r\n",  # SASL response beyond prelogin_line_max
])
def test_too_long_line_gets_err_and_close(cluster, data):
    d = cluster(protocols=PROTOCOLS)
    r = _raw(d)
    try:
        try:
            r.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = r.read_to_eof()
    finally:
        r.close()
    assert got.endswith(b"-ERR Line too long.\r\n"), got
    assert d.metrics()["mailcluster_prelogin_too_long_total"] == 1


def test_a_line_of_255_octets_is_fine(cluster):
    d = cluster(protocols=PROTOCOLS)
    r = _raw(d)
    try:
        line = b"USER " + b"u" * 250
        assert len(line) == 255
        r.send(line + b"\r\n")
        assert r.readline() == b"+OK\r\n"
    finally:
        r.close()


def test_idle_client_is_disconnected(cluster):
    d = cluster(protocols=PROTOCOLS, prelogin_timeout="1s")
    r = _raw(d)
    try:
        r.send(b"CAPA\r\n")
        r.readline()
        r.multiline()
        assert r.read_to_eof(timeout=10) == b"-ERR Disconnected for inactivity.\r\n"
    finally:
        r.close()
    assert d.metrics()["mailcluster_prelogin_timeouts_total"] == 1


# --------------------------------------------------------------------------- kick


def test_kick_ends_a_pop3_session_with_err(cluster):
    d = cluster(protocols=PROTOCOLS)
    user = "user213"
    p = _pop3(d, source_ip="127.0.0.74")
    try:
        p.user(user)
        p.pass_("password")
        assert p.stat()[0] == 3
        rows = d.cli_json("who", user)
        assert len(rows) == 1 and rows[0]["protocol"] == "pop3", rows
        assert rows[0]["client"].startswith("127.0.0.74:"), rows
        r = d.cli("kick", user)
        assert r.returncode == 0, r.stderr
        p.sock.settimeout(10)
        data = b""
        while True:
            chunk = p.sock.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data == b"-ERR Disconnected by the administrator.\r\n", data
    finally:
        try:
            p.close()
        except OSError:
            pass
    wait_for(lambda: d.cli_json("who") == [], 10, message="no sessions after kick")
    assert d.metrics()["mailcluster_sessions_kicked_total"] == 1

