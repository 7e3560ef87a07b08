"""The LMTP front-end: routing each recipient, delivery to the right backend, per-recipient
replies in order, backend failures, limits and protocol errors.

Every test uses its own users (user214..user230, user239..user249, user262..user278: no other
test file touches them) and counts the messages in their maildirs (new/ + cur/) on every
backend before and after, so a delivery is seen on the right backend and on no other.
"""

from __future__ import annotations

import os
import re
import smtplib
import socket
import threading
import time

from mchelpers import login_lands_on, wait_for

PROTOCOLS = ("imap", "lmtp")


# --------------------------------------------------------------------------- helpers


class RawLMTP:
    """A line-level LMTP client that sees every reply line (smtplib.LMTP.data returns only the
    first of the per-recipient replies)."""

    def __init__(self, port: int, timeout: float = 30, source_ip: str | None = None):
        src = (source_ip, 0) if source_ip else None
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=src)
        self.buf = b""
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; partial data {self.buf[:200]!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def reply(self) -> list[bytes]:
        """One reply: its lines (without CRLF), up to the one with a space after the code."""
        lines = []
        while True:
            line = self._line()
            lines.append(line)
            assert re.match(rb"^\d{3}[ -]|^\d{3}$", line), f"not a reply line: {line!r}"
            if len(line) == 3 or line[3:4] == b" ":
                return lines

    def cmd(self, line: bytes) -> list[bytes]:
        self.send(line + b"\r\n")
        return self.reply()

    def code(self, line: bytes) -> int:
        return int(self.cmd(line)[-1][:3])

    def is_closed(self, timeout: float = 10) -> bool:
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def lmtp(d, **kw) -> RawLMTP:
    c = RawLMTP(d.ports["lmtp"], **kw)
    assert c.greeting[0].startswith(b"220 ") and b"LMTP" in c.greeting[0], c.greeting
    return c


def mail_count(backend, user: str) -> int:
    base = os.path.join(backend.dir, "mail", user)
    return sum(len(os.listdir(os.path.join(base, sub))) for sub in ("new", "cur")
               if os.path.isdir(os.path.join(base, sub)))


def counts(fleet, users) -> dict:
    return {(u, b.name): mail_count(b, u) for u in users for b in fleet.backends}


def delta(fleet, before: dict, users) -> dict:
    """{(user, backend): new messages} for every pair that changed."""
    after = counts(fleet, users)
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def newest_message(backend, user: str) -> bytes:
    """The message delivered last (the pre-filled ones are dated in the past)."""
    base = os.path.join(backend.dir, "mail", user)
    paths = [os.path.join(base, sub, name) for sub in ("new", "cur")
             for name in os.listdir(os.path.join(base, sub))]
    with open(max(paths, key=lambda p: os.stat(p).st_mtime_ns), "rb") as f:
        return f.read()


def group_of(d, user: str) -> str:
    return d.cli_json("user", "status", user)[0]["group"]


def place(d, user: str, backend: str) -> None:
    r = d.cli("group", "move", "--direct", group_of(d, user), backend)
    assert r.returncode == 0, r.stderr


def message(subject: str, size: int = 0) -> bytes:
    body = b"Subject: " + subject.encode() + b"\r\nFrom: <sender@example.com>\r\n\r\nHello.\r\n"
    while len(body) < size:
        body += b"x" * 70 + b"\r\n"
    return body


def transaction(c: RawLMTP, rcpts: list[str], msg: bytes, sender: bytes = b"<sender@example.com>"):
    """LHLO, MAIL, the RCPTs (pipelined in one write), DATA, the message: returns
    (rcpt replies, data replies) - one data reply per accepted recipient."""
    assert c.code(b"LHLO mta.example.com") == 250
    assert c.code(b"MAIL FROM:" + sender) == 250
    c.send(b"".join(b"RCPT TO:<" + r.encode() + b">\r\n" for r in rcpts))
    rcpt_replies = [c.reply() for _ in rcpts]
    accepted = sum(1 for r in rcpt_replies if r[-1].startswith(b"2"))
    data = c.cmd(b"DATA")
    if accepted == 0:
        return rcpt_replies, data
    assert data[-1].startswith(b"354"), data
    c.send(msg + b"\r\n.\r\n")
    return rcpt_replies, [c.reply() for _ in range(accepted)]


# --------------------------------------------------------------------------- tests


def test_greeting_lhlo_and_a_real_client(cluster, fleet):
    d = cluster(protocols=PROTOCOLS, lmtp_username="localpart")
    c = lmtp(d)
    try:
        lines = c.cmd(b"LHLO mta.example.com")
        assert lines[0].startswith(b"250-")
        caps = [line[4:] for line in lines[1:]]
        assert caps == [b"PIPELINING", b"ENHANCEDSTATUSCODES", b"8BITMIME", b"SIZE 67108864"]
        assert lines[-1].startswith(b"250 ")
        assert c.code(b"NOOP") == 250
        assert c.code(b"VRFY user214") == 252
        assert c.code(b"QUIT") == 221
        assert c.is_closed()
    finally:
        c.close()

    # Python's smtplib speaking LMTP, one recipient
    user = "user214"
    before = counts(fleet, [user])
    s = smtplib.LMTP("127.0.0.1", d.ports["lmtp"], timeout=30)
    try:
        code, _ = s.ehlo("mta.example.com")  # LMTP.ehlo sends LHLO
        assert code == 250
        assert s.has_extn("size") and s.has_extn("pipelining") and not s.has_extn("chunking")
        refused = s.sendmail("sender@example.com", [f"{user}@example.com"],
                             message("smtplib").decode())
        assert refused == {}
        s.quit()
    finally:
        s.close()
    assert delta(fleet, before, [user]) == {(user, login_lands_on(d, user)): 1}


def test_delivery_lands_where_imap_logins_land(cluster, fleet):
    """With lmtp_username = localpart, user@domain goes where IMAP logins of user go; with the
    default (address), a bare local part does too."""
    for setting, users, domain in (("localpart", ["user215", "user216", "user217"], "@example.com"),
                                   ("address", ["user218", "user219"], "")):
        d = cluster(protocols=PROTOCOLS, lmtp_username=setting)
        imap_backend = {u: login_lands_on(d, u) for u in users}  # assigns their groups
        before = counts(fleet, users)
        c = lmtp(d)
        try:
            for u in users:
                rcpt, data = transaction(c, [u + domain], message(f"to {u}"))
                assert rcpt[0][-1].startswith(b"250"), rcpt
                assert data[0][-1].startswith(b"250"), data
        finally:
            c.close()
        assert delta(fleet, before, users) == {(u, imap_backend[u]): 1 for u in users}, setting
        d.stop()


def test_address_mode_routes_by_the_whole_address(cluster, fleet):
    d = cluster(protocols=PROTOCOLS)  # lmtp_username = address (default)
    user, address = "user220", "User220@Example.COM"
    c = lmtp(d)
    before = counts(fleet, [user])
    try:
        rcpt, data = transaction(c, [address], message("whole address"))
        assert data[0][-1].startswith(b"250"), data
    finally:
        c.close()
    # routed as the user "user220@example.com" (normalised), wherever that group lives
    st = d.cli_json("user", "status", address.lower())[0]
    assert st["backend"] != "-", st
    assert delta(fleet, before, [user]) == {(user, st["backend"]): 1}


def test_one_transaction_three_backends_replies_in_rcpt_order(cluster, fleet):
    d = cluster(protocols=PROTOCOLS, lmtp_username="localpart")
    names = [b.name for b in fleet.backends]
    users = ["user221", "user222", "user223", "user224", "user225", "user226"]
    for i, u in enumerate(users):
        place(d, u, names[i % 3])
    assert len({group_of(d, u) for u in users}) == len(users)
    before = counts(fleet, users)
    # interleaved across backends, with an unknown user in the middle
    rcpts = [f"{u}@example.com" for u in users[:3]] + ["nosuchuser@example.com"] + \
        [f"{u}@example.com" for u in users[3:]]
    c = lmtp(d)
    try:
        rcpt_replies, data_replies = transaction(c, rcpts, message("three backends"))
        codes = [int(r[-1][:3]) for r in rcpt_replies]
        assert codes == [250, 250, 250, 550, 250, 250, 250], rcpt_replies
        assert len(data_replies) == 6
        # Dovecot names the recipient in its DATA reply: each reply is that recipient's
        for u, reply in zip(users, data_replies):
            assert reply[-1].startswith(b"250 "), reply
            assert f"<{u}@example.com>".encode() in reply[-1], (u, data_replies)
        assert c.code(b"NOOP") == 250  # nothing left over
        assert c.code(b"QUIT") == 221
    finally:
        c.close()
    assert delta(fleet, before, users) == {(u, names[i % 3]): 1 for i, u in enumerate(users)}
    m = d.metrics()
    assert m['mailcluster_lmtp_recipients_total{result="delivered"}'] == 6, m
    log = d.log_text()
    for i, u in enumerate(users):
        assert re.search(rf"event=lmtp_rcpt stage=data user={u} group=\d+ backend={names[i % 3]} "
                         rf"result=delivered", log), log
    assert re.search(r"event=lmtp_rcpt stage=rcpt user=nosuchuser group=\d+ backend=\S+ "
                     r"result=rejected", log), log


def test_fully_pipelined_transactions(cluster, fleet):
    """A client that pipelines everything up to DATA, and two transactions in one go."""
    d = cluster(protocols=PROTOCOLS, lmtp_username="localpart")
    users = ["user227", "user228"]
    place(d, users[0], fleet.backends[0].name)
    place(d, users[1], fleet.backends[2].name)
    before = counts(fleet, users)
    c = lmtp(d)
    try:
        c.send(b"LHLO mta\r\nMAIL FROM:<>\r\nRCPT TO:<user227@x>\r\nRCPT TO:<user228@x>\r\n"
               b"DATA\r\n")
        assert c.reply()[-1].startswith(b"250 SIZE")
        assert [c.reply()[-1][:3] for _ in range(3)] == [b"250"] * 3
        assert c.reply()[-1].startswith(b"354")
        # the message, the next transaction and QUIT in one write
        c.send(message("one") + b"\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<user228@x>\r\n"
               b"DATA\r\n")
        assert [c.reply()[-1][:3] for _ in range(2)] == [b"250"] * 2
        assert [c.reply()[-1][:3] for _ in range(2)] == [b"250"] * 2
        assert c.reply()[-1].startswith(b"354")
        c.send(message("two") + b"\r\n.\r\nQUIT\r\n")
        assert c.reply()[-1].startswith(b"250")
        assert c.reply()[-1].startswith(b"221")
    finally:
        c.close()
    assert delta(fleet, before, users) == {(users[0], fleet.backends[0].name): 1,
                                           (users[1], fleet.backends[2].name): 2}


def test_stopped_backend_tempfails_its_recipients_only(cluster, fleet):
    d = cluster(protocols=PROTOCOLS, lmtp_username="localpart", proxy_timeout="2s",
                proxy_connect_retry="300ms")
    names = [b.name for b in fleet.backends]
    users = ["user229", "user230", "user239"]
    for u, name in zip(users, names):
        place(d, u, name)
    victim = fleet.backends[1]
    before = counts(fleet, users)
    victim.stop()
    try:
        assert not victim.is_running()
        c = lmtp(d)
        try:
            rcpt, data = transaction(c, [f"{u}@example.com" for u in users], message("down"))
            assert rcpt[0][-1].startswith(b"250"), rcpt
            assert rcpt[1][-1] == b"451 4.4.0 <user230@example.com> temporarily unavailable, " \
                                  b"try again later", rcpt
            assert rcpt[2][-1].startswith(b"250"), rcpt
            assert len(data) == 2
            assert b"<user229@example.com>" in data[0][-1] and data[0][-1].startswith(b"250")
            assert b"<user239@example.com>" in data[1][-1] and data[1][-1].startswith(b"250")
            # a new transaction tries the backend again (and tempfails again)
            assert c.code(b"MAIL FROM:<>") == 250
            assert c.cmd(b"RCPT TO:<user230@example.com>")[-1].startswith(b"451 4.4.0")
        finally:
            c.close()
    finally:
        victim.start()
    assert victim.is_running()
    assert delta(fleet, before, users) == {(users[0], names[0]): 1, (users[2], names[2]): 1}
    m = d.metrics()
    assert m['mailcluster_lmtp_recipients_total{result="tempfailed"}'] == 2, m
    assert m['mailcluster_lmtp_recipients_total{result="delivered"}'] == 2, m
    assert re.search(r"event=lmtp_rcpt stage=rcpt user=user230 group=\d+ backend=backend2 "
                     r"result=tempfail", d.log_text())

    # and once it is back, its users get their mail
    c = lmtp(d)
    try:
        rcpt, data = transaction(c, ["user230@example.com"], message("back"))
        assert data[0][-1].startswith(b"250"), data
    finally:
        c.close()
    assert delta(fleet, before, users) == {(users[0], names[0]): 1, (users[1], names[1]): 1,
                                           (users[2], names[2]): 1}


def test_backend_lost_between_rcpt_and_data(cluster, fleet):
    """A backend that accepted its recipients and goes away before DATA: those recipients get
    451 at DATA, the others are delivered exactly once."""
    d = cluster(protocols=PROTOCOLS, lmtp_username="localpart", proxy_timeout="2s")
    names = [b.name for b in fleet.backends]
    users = ["user240", "user241", "user242", "user243"]
    for u, name in zip(users, names + [names[2]]):
        place(d, u, name)
    victim = fleet.backends[2]
    before = counts(fleet, users)
    c = lmtp(d)
    try:
        assert c.code(b"LHLO mta") == 250
        assert c.code(b"MAIL FROM:<sender@example.com>") == 250
        for u in users:
            assert c.code(f"RCPT TO:<{u}@example.com>".encode()) == 250
        victim.stop()
        assert c.cmd(b"DATA")[-1].startswith(b"354")
        c.send(message("lost") + b"\r\n.\r\n")
        replies = [c.reply()[-1] for _ in users]
        assert replies[0].startswith(b"250 ") and b"<user240@" in replies[0], replies
        assert replies[1].startswith(b"250 ") and b"<user241@" in replies[1], replies
        assert replies[2] == b"451 4.4.0 <user242@example.com> temporarily unavailable, " \
                             b"try again later", replies
        assert replies[3].startswith(b"451 4.4.0 <user243@example.com>"), replies
        assert c.code(b"NOOP") == 250
    finally:
        c.close()
        victim.start()
    assert victim.is_running()
    assert delta(fleet, before, users) == {(users[0], names[0]): 1, (users[1], names[1]): 1}


def test_unassigned_group_is_assigned_at_rcpt(cluster, fleet):
    d = cluster(protocols=PROTOCOLS, lmtp_username="localpart")
    user = "user244"
    assert d.cli_json("user", "status", user)[0]["backend"] == "-"
    before = counts(fleet, [user])
    c = lmtp(d)
    try:
        rcpt, data = transaction(c, [f"{user}@example.org"], message("new user"))
        assert data[0][-1].startswith(b"250"), data
    finally:
        c.close()
    st = d.cli_json("user", "status", user)[0]
    assert st["backend"] in {b.name for b in fleet.backends}, st
    assert delta(fleet, before, [user]) == {(user, st["backend"]): 1}
    assert login_lands_on(d, user) == st["backend"]
    assert d.metrics()["mailcluster_group_assignments_total"] == 1
    assert f"event=group_assign group={st['group']} backend={st['backend']}" in d.log_text()


def test_bad_sequences_and_syntax_errors(cluster, fleet):
    d = cluster(protocols=PROTOCOLS, lmtp_username="localpart", bad_commands_max=100)
    user = "user245"
    before = counts(fleet, [user])
    c = lmtp(d)
    try:
        assert c.code(b"MAIL FROM:<a@b>") == 503  # LHLO first
        assert c.code(b"HELO mta") == 502  # LMTP has LHLO only
        assert c.code(b"LHLO") == 501
        assert c.code(b"LHLO mta") == 250
        assert c.code(b"RCPT TO:<user245@x>") == 503  # no MAIL
        assert c.code(b"DATA") == 503
        assert c.code(b"MAIL FROM:a@b") == 501
        assert c.code(b"MAIL TO:<a@b>") == 501
        assert c.code(b"MAIL FROM:<a@b> XFOO=1") == 555
        assert c.code(b"MAIL FROM:<a@b> SIZE=999999999999") == 552
        assert c.code(b"MAIL FROM:<a@b> BODY=8BITMIME SIZE=1000") == 250
        assert c.code(b"MAIL FROM:<a@b>") == 503  # nested
        assert c.code(b"DATA") == 554  # no valid recipients
        assert c.code(b"RCPT TO:user245@x") == 501
        assert c.code(b"RCPT TO:<>") == 501
        assert c.code(b"RCPT TO:<user245@x> NOTIFY=NEVER") == 555
        assert c.code(b"RCPT TO:<\"a b\"@x>") == 550  # no such user name can exist
        assert c.code(b"FOO bar") == 500
        assert c.code(b"BDAT 10 LAST") == 502
        assert c.code(b"STARTTLS") == 502
        assert c.code(b"DATA extra") == 501
        assert c.code(b"RCPT TO:<user245@x>") == 250
        assert c.code(b"RSET") == 250
        assert c.code(b"DATA") == 503  # RSET ended the transaction
        assert c.code(b"NOOP") == 250
        assert c.code(b"QUIT") == 221
        assert c.is_closed()
    finally:
        c.close()
    assert delta(fleet, before, [user]) == {}


def test_too_many_bad_commands_closes(cluster):
    d = cluster(protocols=PROTOCOLS, bad_commands_max=3)
    c = lmtp(d)
    try:
        assert c.code(b"FOO") == 500
        assert c.code(b"BAR") == 500
        assert c.code(b"BAZ") == 421
        assert c.is_closed()
    finally:
        c.close()


def test_recipients_max(cluster, fleet):
    d = cluster(protocols=PROTOCOLS, lmtp_username="localpart", lmtp_recipients_max=2)
    users = ["user246", "user247", "user248"]
    before = counts(fleet, users)
    c = lmtp(d)
    try:
        rcpt, data = transaction(c, [f"{u}@x" for u in users], message("max"))
        assert [r[-1][:9] for r in rcpt] == [b"250 2.1.5", b"250 2.1.5", b"452 4.5.3"], rcpt
        assert len(data) == 2 and all(r[-1].startswith(b"250") for r in data), data
    finally:
        c.close()
    changed = delta(fleet, before, users)
    assert sorted(u for u, _ in changed) == users[:2] and set(changed.values()) == {1}


def test_line_too_long_closes(cluster):
    d = cluster(protocols=PROTOCOLS)
    c = lmtp(d)
    try:
        assert c.code(b"LHLO mta") == 250
        c.send(b"NOOP " + b"x" * 10000 + b"\r\n")
        assert c.reply()[-1].startswith(b"500 ")
        assert c.is_closed()
    finally:
        c.close()
    assert d.metrics()["mailcluster_prelogin_too_long_total"] == 1


def test_idle_timeout(cluster):
    d = cluster(protocols=PROTOCOLS, prelogin_timeout="1s")
    c = lmtp(d)
    try:
        t0 = time.monotonic()
        assert c.reply()[-1].startswith(b"421 4.4.2")
        assert time.monotonic() - t0 < 5
        assert c.is_closed()
    finally:
        c.close()


def test_message_over_lmtp_message_max_is_refused_for_every_recipient(cluster, fleet):
    d = cluster(protocols=PROTOCOLS, lmtp_username="localpart", lmtp_message_max="10k")
    names = [b.name for b in fleet.backends]
    users = ["user249", "user262"]
    place(d, users[0], names[0])
    place(d, users[1], names[1])
    before = counts(fleet, users)
    c = lmtp(d)
    try:
        lines = c.cmd(b"LHLO mta")
        assert lines[-1] == b"250 SIZE 10240", lines
        rcpt, data = transaction(c, [f"{u}@x" for u in users], message("big", 20000))
        assert [r[-1][:9] for r in data] == [b"552 5.3.4", b"552 5.3.4"], data
        # the connection goes on, and a message that fits gets through
        rcpt, data = transaction(c, [f"{users[0]}@x"], message("small", 9000))
        assert data[0][-1].startswith(b"250"), data
    finally:
        c.close()
    assert delta(fleet, before, users) == {(users[0], names[0]): 1}


def test_client_leaving_mid_data_delivers_nothing(cluster, fleet):
    d = cluster(protocols=PROTOCOLS, lmtp_username="localpart")
    users = ["user263", "user264"]
    place(d, users[0], fleet.backends[0].name)
    place(d, users[1], fleet.backends[1].name)
    before = counts(fleet, users)
    c = lmtp(d)
    try:
        assert c.code(b"LHLO mta") == 250
        assert c.code(b"MAIL FROM:<a@b>") == 250
        for u in users:
            assert c.code(f"RCPT TO:<{u}@x>".encode()) == 250
        assert c.cmd(b"DATA")[-1].startswith(b"354")
        c.send(message("half", 5000))  # no end marker
        time.sleep(0.3)
    finally:
        c.close()
    wait_for(lambda: "event=lmtp_data_aborted" in d.log_text(), 10, message="lmtp_data_aborted")
    wait_for(lambda: d.status()["clients"] == 0, 10, message="client count back to 0")
    time.sleep(0.5)
    assert delta(fleet, before, users) == {}
    assert d.metrics()['mailcluster_lmtp_recipients_total{result="delivered"}'] == 0


def test_bare_lf_cannot_end_the_message_early_at_the_backend(cluster, fleet):
    """Dovecot ends DATA at LF "." LF too: a body with one must not smuggle commands."""
    d = cluster(protocols=PROTOCOLS, lmtp_username="localpart")
    user, victim = "user265", "user266"
    place(d, user, fleet.backends[0].name)
    place(d, victim, fleet.backends[0].name)
    before = counts(fleet, [user, victim])
    # without the rewrite Dovecot would end the message at "first" and run the rest
    smuggled = (b"Subject: smuggle\r\n\r\nfirst\n.\nMAIL FROM:<evil@x>\r\n"
                b"RCPT TO:<user266@x>\r\nDATA\r\nevil body\n.\nsecond\r\n..dotted\r\n")
    c = lmtp(d)
    try:
        rcpt, data = transaction(c, [f"{user}@x"], smuggled.rstrip(b"\r\n"))
        assert len(data) == 1 and data[0][-1].startswith(b"250"), data
        assert c.code(b"NOOP") == 250  # replies are still in step
    finally:
        c.close()
    assert delta(fleet, before, [user, victim]) == {(user, fleet.backends[0].name): 1}
    stored = newest_message(fleet.backends[0], user).replace(b"\r\n", b"\n")
    # one message, whole: the dot-line after the bare LF is content, the stuffed line unstuffed
    assert b"first\n.\nMAIL FROM:<evil@x>\nRCPT TO:<user266@x>\nDATA\nevil body\n.\n" \
        in stored, stored
    assert stored.endswith(b"second\n.dotted\n"), stored


def test_message_bytes_arrive_intact(cluster, fleet):
    """Dot-stuffing, long lines, 8-bit bytes and an empty last line survive the trip."""
    d = cluster(protocols=PROTOCOLS, lmtp_username="localpart")
    user = "user267"
    place(d, user, fleet.backends[2].name)
    # as the client sends them: dot-stuffed
    body_lines = [b"Subject: intact", b"", b"..leading dot", b"..", b"caf\xc3\xa9 8bit",
                  b"y" * 5000, b"...", b""]
    wire = b"\r\n".join(body_lines)
    c = lmtp(d)
    try:
        rcpt, data = transaction(c, [f"{user}@x"], wire)
        assert data[0][-1].startswith(b"250"), data
    finally:
        c.close()
    stored = newest_message(fleet.backends[2], user).replace(b"\r\n", b"\n")
    expected = b"\n".join(line[1:] if line.startswith(b".") else line for line in body_lines)
    assert stored.endswith(expected + b"\n"), (stored[-200:], expected[-200:])


def test_large_message_to_three_backends_is_stored_whole_on_each(cluster, fleet):
    d = cluster(protocols=PROTOCOLS, lmtp_username="localpart")
    users = ["user275", "user276", "user277"]
    for u, b in zip(users, fleet.backends):
        place(d, u, b.name)
    lines = [b"Subject: large", b""] + [b"%07d " % i + b"z" * 90 for i in range(30000)]
    wire = b"\r\n".join(lines)  # ~3 MB
    c = lmtp(d)
    try:
        rcpt, data = transaction(c, [f"{u}@x" for u in users], wire)
        assert [r[-1][:3] for r in data] == [b"250"] * 3, data
    finally:
        c.close()
    expected = b"\n".join(lines) + b"\n"
    for u, b in zip(users, fleet.backends):
        stored = newest_message(b, u).replace(b"\r\n", b"\n")
        assert stored.endswith(expected), (u, b.name, len(stored), len(expected))


def test_client_address_is_forwarded_with_xclient(cluster, fleet):
    d = cluster(protocols=PROTOCOLS, lmtp_username="localpart")
    user = "user268"
    place(d, user, fleet.backends[1].name)
    c = lmtp(d, source_ip="127.0.7.77")
    try:
        rcpt, data = transaction(c, [f"{user}@x"], message("xclient"))
        assert data[0][-1].startswith(b"250"), data
        assert c.code(b"QUIT") == 221
    finally:
        c.close()
    session = re.search(r"event=lmtp_rcpt stage=data user=user268 .* session=(\S+)",
                        d.log_text()).group(1)
    b = fleet.backends[1]
    wait_for(lambda: "Disconnect from 127.0.7.77" in b.log_text(), 10,
             message="the backend to log the forwarded client address")
    assert f"lmtp({user})<" in b.log_text() and f"><{session}" in b.log_text(), session


def test_backend_connection_is_kept_across_transactions(cluster, fleet):
    """Transactions on one client connection share the backend connection: MAIL again on it,
    and RSET after a transaction that never reached DATA."""
    d = cluster(protocols=PROTOCOLS, lmtp_username="localpart")
    user, other = "user269", "user270"
    b = fleet.backends[0]
    place(d, user, b.name)
    place(d, other, fleet.backends[1].name)
    before = counts(fleet, [user, other])
    c = lmtp(d, source_ip="127.0.7.78")
    try:
        for n in range(3):
            rcpt, data = transaction(c, [f"{user}@x"], message(f"kept {n}"))
            assert data[0][-1].startswith(b"250"), data
        # a transaction that ends with RSET, another refused at RCPT, then one more
        assert c.code(b"MAIL FROM:<a@b>") == 250
        assert c.code(f"RCPT TO:<{user}@x>".encode()) == 250
        assert c.code(b"RSET") == 250
        assert c.code(b"MAIL FROM:<a@b>") == 250
        assert c.code(b"RCPT TO:<nosuchuser@x>") == 550
        assert c.code(f"RCPT TO:<{other}@x>".encode()) == 250
        assert c.cmd(b"DATA")[-1].startswith(b"354")
        c.send(message("mixed") + b"\r\n.\r\n")
        assert c.reply()[-1].startswith(b"250")
        rcpt, data = transaction(c, [f"{user}@x"], message("after rset"))
        assert data[0][-1].startswith(b"250"), data
        assert c.code(b"QUIT") == 221
    finally:
        c.close()
    assert delta(fleet, before, [user, other]) == {(user, b.name): 4,
                                                   (other, fleet.backends[1].name): 1}
    # one backend connection for the whole client session
    wait_for(lambda: "Disconnect from 127.0.7.78" in b.log_text(), 10,
             message="the backend connection to end")
    assert b.log_text().count("Disconnect from 127.0.7.78") == 1, b.log_tail(30)


def test_kept_backend_connection_that_died_is_replaced(cluster, fleet):
    d = cluster(protocols=PROTOCOLS, lmtp_username="localpart", proxy_timeout="10s",
                proxy_connect_retry="200ms")
    user = "user271"
    victim = fleet.backends[2]
    place(d, user, victim.name)
    before = counts(fleet, [user])
    c = lmtp(d)
    try:
        rcpt, data = transaction(c, [f"{user}@x"], message("first"))
        assert data[0][-1].startswith(b"250"), data
        victim.stop()  # the kept connection dies with it
        victim.start()
        rcpt, data = transaction(c, [f"{user}@x"], message("second"))
        assert rcpt[0][-1].startswith(b"250"), rcpt
        assert data[0][-1].startswith(b"250"), data
    finally:
        c.close()
        if not victim.is_running():
            victim.start()
    assert delta(fleet, before, [user]) == {(user, victim.name): 2}
    assert d.metrics()['mailcluster_lmtp_recipients_total{result="tempfailed"}'] == 0


def test_standby_backend_tempfails_at_once(cluster, fleet):
    d = cluster(protocols=PROTOCOLS, lmtp_username="localpart", proxy_timeout="10s")
    user = "user278"
    target = fleet.backends[1].name
    place(d, user, target)
    assert d.cli("backend", "update", "--status", "standby", target).returncode == 0
    before = counts(fleet, [user])
    c = lmtp(d)
    try:
        assert c.code(b"LHLO mta") == 250
        assert c.code(b"MAIL FROM:<>") == 250
        t0 = time.monotonic()
        assert c.cmd(f"RCPT TO:<{user}@x>".encode())[-1].startswith(b"451 4.4.0")
        assert time.monotonic() - t0 < 3  # no connection attempts
        assert c.code(b"DATA") == 554
    finally:
        c.close()
    assert delta(fleet, before, [user]) == {}
    assert re.search(r"event=lmtp_rcpt stage=rcpt user=user278 .* result=tempfail .* "
                     r"reason=\"backend backend2 of group \d+ is standby", d.log_text()), \
        d.log_text()
