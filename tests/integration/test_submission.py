"""The Submission front-end (RFC 6409): EHLO, STARTTLS, AUTH PLAIN before the login, the
backend login through XCLIENT with Dovecot's submission-login, the relay after it, limits.

The backends' submission service relays to 127.0.0.1:1 (scripts/backends.py).  Nothing
listens there, so a logged-in session is ended by the backend at once with
"421 4.4.0 backendN.mailcluster.test Failed to connect to relay server": the backend's own
answer, with its hostname.  Tests that need a live session after the login (mail going
through, kick) run the `relay_sink` fixture: a minimal SMTP server on 127.0.0.1:1 that
accepts everything and records what the backend relays to it, Received header included.
"""

from __future__ import annotations

import base64
import re
import smtplib
import socket
import ssl
import threading
import time
from typing import Optional

import pytest

from conftest import ClusterFactory
from mchelpers import backend_of, close_quietly, unverified_ssl_context, wait_for

HOSTNAME = "mx.mailcluster.test"
PROTOCOLS = ("imap", "submission")


def _plain_ir(user: str, password: str = "password") -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def _group_of(d, user):
    return d.cli_json("user", "status", user)[0]["group"]


def _backend(fleet, name):
    return next(b for b in fleet.backends if b.name == name)


class RawSMTP:
    """A line-level SMTP client: replies as (code, [lines])."""

    def __init__(self, port: int, source_ip: Optional[str] = None, tls: bool = False,
                 timeout: float = 15, prefix: bytes = b""):
        src = (source_ip, 0) if source_ip else None
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=src)
        if prefix:
            self.sock.sendall(prefix)
        if tls:
            self.sock = unverified_ssl_context().wrap_socket(self.sock,
                                                             server_hostname="localhost")
        self.buf = b""
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def readline(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; partial data {self.buf[:200]!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def reply(self) -> tuple[int, list[bytes]]:
        lines = []
        while True:
            line = self.readline()
            lines.append(line)
            assert re.match(rb"^\d{3}[ -]", line) or re.match(rb"^\d{3}$", line), lines
            if line[3:4] != b"-":
                return int(line[:3]), lines

    def cmd(self, line: bytes) -> tuple[int, list[bytes]]:
        self.send(line + b"\r\n")
        return self.reply()

    def starttls(self) -> None:
        code, lines = self.cmd(b"STARTTLS")
        assert code == 220, lines
        assert self.buf == b"", self.buf
        self.sock = unverified_ssl_context().wrap_socket(self.sock, server_hostname="localhost")

    def closed(self, timeout: float = 10) -> bool:
        """True if the peer closes within timeout (whatever it sends before)."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, ssl.SSLError):
            return True
        except socket.timeout:
            return False
        return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _smtp(port: int, source_ip: Optional[str] = None) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", port, timeout=20,
                        source_address=(source_ip, 0) if source_ip else None)


def _auth_plain(smtp: smtplib.SMTP, user: str, password: str = "password",
                initial_response: bool = True):
    smtp.user, smtp.password = user, password
    return smtp.auth("PLAIN", smtp.auth_plain, initial_response_ok=initial_response)


def _assert_backend_cannot_relay(code: int, text: bytes, backend_name: str):
    """The answer after a login without relay_sink: the backend's, naming itself."""
    assert code == 421 and f"{backend_name}.mailcluster.test".encode() in text, (code, text)


class RelaySink:
    """An SMTP server on the backends' relay address that accepts everything; transcripts
    holds what each relayed connection sent (lines without CRLF)."""

    ADDRESS = ("127.0.0.1", 1)

    def __init__(self):
        self.transcripts: list[list[bytes]] = []
        deadline = time.monotonic() + 20
        while True:
            self.listener = socket.socket()
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self.listener.bind(self.ADDRESS)
                break
            except OSError as e:  # another run's sink: wait for it to go
                self.listener.close()
                if time.monotonic() > deadline:
                    pytest.fail(f"cannot bind the relay sink on {self.ADDRESS}: {e}")
                time.sleep(0.2)
        self.listener.listen(16)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket):
        transcript: list[bytes] = []
        self.transcripts.append(transcript)
        in_data = False
        with conn, conn.makefile("rb") as f:
            conn.sendall(b"220 sink.mailcluster.test ESMTP\r\n")
            for raw in f:
                line = raw.rstrip(b"\r\n")
                transcript.append(line)
                if in_data:
                    if line == b".":
                        in_data = False
                        conn.sendall(b"250 2.0.0 Queued\r\n")
                    continue
                verb = line[:4].upper()
                if verb == b"EHLO":
                    conn.sendall(b"250-sink.mailcluster.test\r\n250-8BITMIME\r\n"
                                 b"250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n")
                elif verb == b"DATA":
                    in_data = True
                    conn.sendall(b"354 Go ahead\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    conn.sendall(b"250 2.0.0 OK\r\n")

    def seen(self, line: bytes) -> Optional[list[bytes]]:
        """The transcript that has line, if any."""
        for t in list(self.transcripts):
            if line in t:
                return t
        return None

    def close(self):
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (Linux)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(5)


@pytest.fixture
def relay_sink():
    sink = RelaySink()
    yield sink
    sink.close()


@pytest.fixture(scope="module")
def subm(request, tmp_path_factory, fleet, tls_files):
    """One daemon with imap, submission and submissions for tests that change nothing."""
    factory = ClusterFactory(tmp_path_factory.mktemp("submission"), fleet, tls_files)
    d = factory(tls=True, protocols=PROTOCOLS, submission_hostname=HOSTNAME)
    yield d
    factory.teardown(request.session.testsfailed > 0)


# --------------------------------------------------------------------------- pre-login


def test_greeting_ehlo_helo_noop_rset_quit(subm):
    r = RawSMTP(subm.ports["submission"])
    try:
        assert r.greeting == (220, [f"220 {HOSTNAME} ESMTP mailcluster".encode()])
        code, lines = r.cmd(b"EHLO client.example")
        assert code == 250 and lines[0] == f"250-{HOSTNAME}".encode(), lines
        keywords = [l[4:] for l in lines[1:]]
        for k in (b"PIPELINING", b"8BITMIME", b"ENHANCEDSTATUSCODES", b"STARTTLS",
                  b"AUTH PLAIN"):
            assert k in keywords, (k, lines)
        # nothing we could not honour before and after the login
        assert not any(k.startswith((b"SIZE", b"CHUNKING", b"BURL", b"XCLIENT", b"SMTPUTF8"))
                       for k in keywords), lines
        assert r.cmd(b"HELO client.example") == (250, [f"250 {HOSTNAME}".encode()])
        assert r.cmd(b"NOOP")[0] == 250
        assert r.cmd(b"RSET")[0] == 250
        assert r.cmd(b"EHLO")[0] == 501
        code, lines = r.cmd(b"QUIT")
        assert code == 221, lines
        assert r.closed()
    finally:
        r.close()


def test_pipelined_commands_are_answered_in_order(subm):
    r = RawSMTP(subm.ports["submission"])
    try:
        r.send(b"EHLO client.example\r\nNOOP\r\nMAIL FROM:<a@b.example>\r\nRSET\r\nQUIT\r\n")
        assert r.reply()[0] == 250
        assert r.reply()[0] == 250
        assert r.reply()[0] == 530
        assert r.reply()[0] == 250
        assert r.reply()[0] == 221
        assert r.closed()
    finally:
        r.close()


def test_mail_rcpt_data_before_auth_are_refused(subm):
    smtp = _smtp(subm.ports["submission"])
    try:
        smtp.ehlo("client.example")
        for command in ("MAIL FROM:<user250@example.com>", "MAIL FROM:", "RCPT TO:<x@y.example>",
                        "DATA", "BDAT 10 LAST"):
            code, msg = smtp.docmd(command)
            assert (code, msg) == (530, b"5.7.0 Authentication required"), (command, code, msg)
        assert smtp.noop()[0] == 250  # still usable
    finally:
        close_quietly(smtp)


def test_unknown_and_unimplemented_commands(subm):
    r = RawSMTP(subm.ports["submission"])
    try:
        assert r.cmd(b"EHLO client.example")[0] == 250
        assert r.cmd(b"FOO bar")[0] == 500
        assert r.cmd(b"VRFY user250")[0] == 502
        assert r.cmd(b"XCLIENT ADDR=1.2.3.4")[0] == 502  # clients may not set their address
        assert r.cmd(b"NOOP\x00junk")[0] == 500
        assert r.cmd(b"")[0] == 500
        assert r.cmd(b"NOOP")[0] == 250
    finally:
        r.close()


def test_auth_needs_ehlo_and_plain(subm):
    r = RawSMTP(subm.ports["submission"])
    try:
        code, lines = r.cmd(b"AUTH PLAIN " + _plain_ir("user250").encode())
        assert code == 503, lines
        assert r.cmd(b"EHLO client.example")[0] == 250
        assert r.cmd(b"AUTH LOGIN")[0] == 504
        assert r.cmd(b"AUTH CRAM-MD5")[0] == 504
        assert r.cmd(b"AUTH")[0] == 501
        # "*" cancels the exchange (RFC 4954): 501, and no failed login
        assert r.cmd(b"AUTH PLAIN") == (334, [b"334 "])
        assert r.cmd(b"*")[0] == 501
        # not base64: 501 5.5.2; "=" (empty) is not a PLAIN message: 535
        code, lines = r.cmd(b"AUTH PLAIN !!!!")
        assert code == 501 and lines[0].startswith(b"501 5.5.2"), lines
        code, lines = r.cmd(b"AUTH PLAIN =")
        assert code == 535 and lines[0].startswith(b"535 5.7.8"), lines
        assert r.cmd(b"NOOP")[0] == 250
    finally:
        r.close()


def test_garbage_ends_with_too_many_invalid_commands(cluster):
    d = cluster(protocols=PROTOCOLS, bad_commands_max=3)
    r = RawSMTP(d.ports["submission"])
    try:
        assert r.cmd(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")[0] == 500
        assert r.cmd(b"GET / HTTP/1.1")[0] == 500
        code, lines = r.cmd(b"MAIL FROM:<a@b.example>")
        assert code == 421 and lines[0].startswith(b"421 4.7.0"), lines
        assert r.closed()
    finally:
        r.close()
    assert "too many invalid commands" in d.log_text()


def test_too_long_line_is_refused_and_closed(cluster):
    d = cluster(protocols=PROTOCOLS, prelogin_line_max="1k")
    r = RawSMTP(d.ports["submission"])
    try:
        assert r.cmd(b"NOOP " + b"x" * 900)[0] == 250  # under the limit
        r.send(b"NOOP " + b"x" * 3000)  # no line end yet
        code, lines = r.reply()
        assert code == 500 and lines[0].startswith(b"500 5.5.2"), lines
        assert r.closed()
    finally:
        r.close()
    r = RawSMTP(d.ports["submission"])
    try:
        code, lines = r.cmd(b"EHLO " + b"a" * 2000)
        assert code == 500, lines
        assert r.closed()
    finally:
        r.close()
    assert d.metrics()["mailcluster_prelogin_too_long_total"] == 2


def test_idle_client_gets_421_timeout(cluster):
    d = cluster(protocols=PROTOCOLS, prelogin_timeout="1s", submission_hostname=HOSTNAME)
    r = RawSMTP(d.ports["submission"])
    try:
        assert r.cmd(b"EHLO client.example")[0] == 250
        r.sock.settimeout(10)
        code, lines = r.reply()
        assert code == 421 and lines[0].startswith(f"421 4.4.2 {HOSTNAME} ".encode()), lines
        assert r.closed()
    finally:
        r.close()
    assert d.metrics()["mailcluster_prelogin_timeouts_total"] == 1


# --------------------------------------------------------------------------- logins


def test_auth_lands_on_the_users_imap_backend_and_mail_goes_through(cluster, fleet, relay_sink):
    d = cluster(protocols=PROTOCOLS)
    user, source = "user251", "127.0.0.70"
    imap = d.login(user, source_ip=source)
    try:
        name = backend_of(imap)
        smtp = _smtp(d.ports["submission"], source_ip=source)
        try:
            smtp.ehlo("client.example")
            assert smtp.has_extn("auth") and smtp.esmtp_features["auth"].split() == ["PLAIN"]
            code, msg = _auth_plain(smtp, user)
            assert code == 235, msg
            # MAIL, RCPT and DATA go to the backend, which relays them
            refused = smtp.sendmail(f"{user}@example.com", ["someone@example.net"],
                                    b"Subject: through mailcluster\r\n\r\nHello.\r\n")
            assert refused == {}
            assert smtp.noop()[0] == 250
        finally:
            close_quietly(smtp)
        # the daemon's login line and the backend's, with the client's address and our
        # session id (XCLIENT ADDR, SESSION)
        m = wait_for(lambda: re.search(
            rf"event=login result=ok protocol=submission user={user} group=\d+ "
            rf"backend={name} address=\S+ client=127\.0\.0\.70:\d+ session=(\S+) tls=no",
            d.log_text()), 5, message="the daemon's submission login line")
        session = m.group(1)
        wait_for(lambda: re.search(
            rf"submission-login: Info: Login: user=<{user}>, method=PLAIN, rip=127\.0\.0\.70, "
            rf".*session=<{re.escape(session)}>", _backend(fleet, name).log_text()),
            10, message=f"the submission login of {user} in {name}'s log")
    finally:
        close_quietly(imap)
    # The backend's session had the client's EHLO domain and address: its Received header.
    t = wait_for(lambda: relay_sink.seen(f"MAIL FROM:<{user}@example.com>".encode()), 5,
                 message="the relayed MAIL FROM")
    assert b"RCPT TO:<someone@example.net>" in t and b"Subject: through mailcluster" in t, t
    received = b"\n".join(t)
    assert re.search(rb"Received: from client\.example \(\[127\.0\.0\.70\]\)\n\s+by "
                     + re.escape(f"{name}.mailcluster.test".encode()), received), t
    m = d.metrics()
    assert m['mailcluster_logins_total{result="ok"}'] == 2, m


def test_backend_that_cannot_relay_answers_after_the_login(subm, fleet):
    """Without the relay sink the backend ends the session itself: its answer comes through."""
    d = subm
    user = "user250"
    smtp = _smtp(d.ports["submission"])
    try:
        smtp.ehlo("client.example")
        assert _auth_plain(smtp, user)[0] == 235
        name = d.cli_json("user", "status", user)[0]["backend"]
        _assert_backend_cannot_relay(*smtp.mail(f"{user}@example.com"), name)
    finally:
        close_quietly(smtp)


def test_login_without_initial_response_and_pipelined_mail(subm, relay_sink):
    d = subm
    user = "user252"
    r = RawSMTP(d.ports["submission"])
    try:
        assert r.cmd(b"EHLO client.example")[0] == 250
        assert r.cmd(b"AUTH PLAIN") == (334, [b"334 "])
        # the response with MAIL FROM and RCPT TO pipelined after it: buffered during the
        # backend login, then relayed
        r.send(_plain_ir(user).encode() + b"\r\nMAIL FROM:<" + user.encode()
               + b"@example.com>\r\nRCPT TO:<rcpt@example.net>\r\n")
        code, lines = r.reply()
        assert code == 235, lines
        assert r.reply()[0] == 250
        assert r.reply()[0] == 250
        assert r.cmd(b"RSET")[0] == 250
        assert r.cmd(b"QUIT")[0] == 221
    finally:
        r.close()
    t = wait_for(lambda: relay_sink.seen(f"MAIL FROM:<{user}@example.com>".encode()), 5,
                 message="the relayed MAIL FROM")
    assert b"RCPT TO:<rcpt@example.net>" in t, t


def test_wrong_password_is_the_backends_answer_then_retry_works(cluster, relay_sink):
    # Dovecot delays further logins from an address that failed one (auth penalty, up to
    # 15 s): a source address of its own, and time for the delay.
    d = cluster(protocols=PROTOCOLS, proxy_timeout="20s")
    user = "user253"
    smtp = _smtp(d.ports["submission"], source_ip="127.0.0.72")
    try:
        smtp.ehlo("client.example")
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            _auth_plain(smtp, user, password="wrong")
        assert e.value.smtp_code == 535
        # Dovecot's own text, not ours ("Authentication credentials invalid")
        assert e.value.smtp_error == b"5.7.8 Authentication failed.", e.value.smtp_error
        assert re.search(rf"event=login result=failed protocol=submission user={user} ",
                         d.log_text())
        # same connection, right password: logged in, and relayed
        code, msg = _auth_plain(smtp, user, initial_response=False)
        assert code == 235, msg
        assert smtp.mail(f"{user}@example.com")[0] == 250
    finally:
        close_quietly(smtp)


def test_auth_failures_max_closes_with_421(cluster):
    d = cluster(protocols=PROTOCOLS, auth_failures_max=2)
    r = RawSMTP(d.ports["submission"], source_ip="127.0.0.73")  # (see above)
    try:
        assert r.cmd(b"EHLO client.example")[0] == 250
        assert r.cmd(b"AUTH PLAIN " + _plain_ir("user254", "wrong").encode())[0] == 535
        r.send(b"AUTH PLAIN !!!!\r\n")
        assert r.reply()[0] == 501
        code, lines = r.reply()
        assert code == 421 and lines[0].startswith(b"421 4.7.0"), lines
        assert r.closed()
    finally:
        r.close()


def test_starttls_then_login(subm, relay_sink):
    d = subm
    user = "user255"
    smtp = _smtp(d.ports["submission"])
    try:
        smtp.ehlo("client.example")
        assert smtp.has_extn("starttls")
        code, _ = smtp.starttls(context=unverified_ssl_context())
        assert code == 220 and isinstance(smtp.sock, ssl.SSLSocket)
        smtp.ehlo("client.example")
        assert not smtp.has_extn("starttls") and smtp.has_extn("auth")
        assert smtp.docmd("STARTTLS")[0] == 503  # already active
        code, msg = smtp.login(user, "password")  # picks PLAIN, the only one offered
        assert code == 235, msg
        assert smtp.mail(f"{user}@example.com")[0] == 250
        assert smtp.rcpt("rcpt@example.net")[0] == 250
    finally:
        close_quietly(smtp)
    assert re.search(rf"event=login result=ok protocol=submission user={user} .* tls=yes",
                     d.log_text())


def test_starttls_drops_pipelined_input_and_requires_ehlo_again(subm):
    r = RawSMTP(subm.ports["submission"])
    try:
        assert r.cmd(b"EHLO client.example")[0] == 250
        r.send(b"STARTTLS\r\nRSET\r\n")  # the RSET came in the clear: dropped
        code, lines = r.reply()
        assert code == 220, lines
        r.sock = unverified_ssl_context().wrap_socket(r.sock, server_hostname="localhost")
        code, lines = r.cmd(b"AUTH PLAIN " + _plain_ir("user256").encode())
        assert code == 503, lines  # the first reply over TLS is this one's, not RSET's
        code, lines = r.cmd(b"EHLO client.example")
        assert code == 250 and b"250-STARTTLS" not in lines and b"250 STARTTLS" not in lines
        assert r.cmd(b"AUTH PLAIN " + _plain_ir("user256").encode())[0] == 235
    finally:
        r.close()


def test_submissions_implicit_tls(subm, relay_sink):
    d = subm
    user = "user257"
    smtp = smtplib.SMTP_SSL("127.0.0.1", d.ports["submissions"], timeout=20,
                            context=unverified_ssl_context())
    try:
        code, _ = smtp.ehlo("client.example")
        assert code == 250 and not smtp.has_extn("starttls") and smtp.has_extn("auth")
        code, msg = _auth_plain(smtp, user)
        assert code == 235, msg
        assert smtp.sendmail(f"{user}@example.com", ["rcpt@example.net"],
                             b"Subject: over submissions\r\n\r\nHi.\r\n") == {}
    finally:
        close_quietly(smtp)
    assert re.search(rf"event=login result=ok protocol=submission user={user} .* tls=yes",
                     d.log_text())
    t = wait_for(lambda: relay_sink.seen(f"MAIL FROM:<{user}@example.com>".encode()), 5,
                 message="the relayed MAIL FROM")
    assert b"Subject: over submissions" in t, t


def test_plaintext_auth_needs_tls_for_remote_clients(cluster, fleet, relay_sink):
    """A client that is not on loopback (its address from a PROXY header) gets no AUTH until
    STARTTLS; its address reaches the backend through XCLIENT."""
    d = cluster(protocols=PROTOCOLS, tls=True, haproxy=("submission",),
                haproxy_trusted_networks="127.0.0.1/32")
    user = "user258"
    r = RawSMTP(d.ports["submission"],
                prefix=b"PROXY TCP4 192.0.2.58 127.0.0.1 40058 587\r\n")
    try:
        code, lines = r.cmd(b"EHLO client.example")
        keywords = [l[4:] for l in lines[1:]]
        assert code == 250 and b"STARTTLS" in keywords, lines
        assert not any(k.startswith(b"AUTH") for k in keywords), lines
        code, lines = r.cmd(b"AUTH PLAIN " + _plain_ir(user).encode())
        assert code == 538, lines
        r.starttls()
        code, lines = r.cmd(b"EHLO client.example")
        assert any(l[4:] == b"AUTH PLAIN" for l in lines), lines
        assert r.cmd(b"AUTH PLAIN " + _plain_ir(user).encode())[0] == 235
        assert r.cmd(f"MAIL FROM:<{user}@example.com>".encode())[0] == 250
    finally:
        r.close()
    name = d.cli_json("user", "status", user)[0]["backend"]
    wait_for(lambda: re.search(
        rf"submission-login: Info: Login: user=<{user}>, method=PLAIN, rip=192\.0\.2\.58, ",
        _backend(fleet, name).log_text()), 10, message="rip=192.0.2.58 in the backend's log")
    assert re.search(rf"event=login result=ok protocol=submission user={user} .*"
                     rf"client=192\.0\.2\.58:40058 .* tls=yes", d.log_text())


def test_unreachable_backend_gives_454(cluster):
    d = cluster(protocols=PROTOCOLS, proxy_timeout="2s", proxy_connect_retry="500ms")
    assert d.cli("backend", "add", "--site", "dc1", "ghost", "127.0.3.9").returncode == 0
    assert d.cli("backend", "update", "--status", "online", "ghost").returncode == 0
    user = "user259"
    assert d.cli("group", "move", "--direct", _group_of(d, user), "ghost").returncode == 0
    r = RawSMTP(d.ports["submission"], timeout=30)
    try:
        assert r.cmd(b"EHLO client.example")[0] == 250
        code, lines = r.cmd(b"AUTH PLAIN " + _plain_ir(user).encode())
        assert lines == [b"454 4.7.0 Temporary authentication failure, try again later"], lines
        assert r.cmd(b"NOOP")[0] == 250  # back in pre-login, usable
    finally:
        r.close()
    assert re.search(rf"event=login result=unavailable protocol=submission user={user} .*"
                     rf"backend=ghost", d.log_text())


def test_standby_backend_gives_454(cluster, fleet):
    d = cluster(protocols=PROTOCOLS)
    user = "user260"
    victim = fleet.backends[1].name
    assert d.cli("group", "move", "--direct", _group_of(d, user), victim).returncode == 0
    assert d.cli("backend", "update", "--status", "standby", victim).returncode == 0
    r = RawSMTP(d.ports["submission"])
    try:
        assert r.cmd(b"EHLO client.example")[0] == 250
        code, lines = r.cmd(b"AUTH PLAIN " + _plain_ir(user).encode())
        assert code == 454 and lines[0].startswith(b"454 4.7.0"), lines
    finally:
        r.close()


def test_kick_ends_a_submission_session_with_421(cluster, relay_sink):
    d = cluster(protocols=PROTOCOLS)
    user = "user261"
    r = RawSMTP(d.ports["submission"], source_ip="127.0.0.71")
    try:
        assert r.cmd(b"EHLO client.example")[0] == 250
        assert r.cmd(b"AUTH PLAIN " + _plain_ir(user).encode())[0] == 235
        rows = d.cli_json("who", user)
        assert len(rows) == 1 and rows[0]["protocol"] == "submission", rows
        assert rows[0]["client"].startswith("127.0.0.71:"), rows
        res = d.cli("kick", user)
        assert res.returncode == 0 and "1" in res.stdout, (res.stdout, res.stderr)
        r.sock.settimeout(10)
        assert r.readline() == b"421 4.3.2 Disconnected by the administrator"
        assert r.closed()
    finally:
        r.close()
    wait_for(lambda: d.status()["sessions"] == 0 and d.status()["clients"] == 0, 10,
             message="no sessions after kick")
    assert d.metrics()["mailcluster_sessions_kicked_total"] == 1
