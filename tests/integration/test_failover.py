"""Automatic failover and safe moves (issue 5) with real Dovecot backends.

- a backend down for less than backend_failover_delay moves nobody;
- a backend down for longer is marked down by the controller (majority of live daemons), its
  users log in on other backends (the time from its death to the first successful login
  elsewhere is printed), and when it comes back it is marked up but nobody moves back;
- a move while a client IDLEs gives that client a BYE and its reconnect lands on the new
  backend; `backend evacuate` empties a backend at move_rate;
- an LMTP transaction in flight holds the move's acknowledgement until it is over.

Delays are shortened (probe_interval 1s, backend_failover_delay 15s) so that the suite stays
fast; every wait is bounded and generous, timings are printed, not asserted.
"""

from __future__ import annotations

import imaplib
import os
import re
import signal
import smtplib
import time

from mchelpers import backend_of, close_quietly, imap_login, unique_keyspace, wait_for

FAILOVER_DELAY = 15
SETTINGS = {
    "probe_interval": "1s",
    "probe_timeout": "1s",
    "backend_failover_delay": f"{FAILOVER_DELAY}s",
    "backend_recovery_delay": "4s",
    "controller_lease": "3s",
    "move_timeout": "20s",
}
WAIT = 60
DAEMON_START = 30  # seconds: a daemon on Cassandra connects and reads the GeoDB first


def _backend_row(d, name: str) -> dict:
    rows = d.cli_json("backend", "status", name)
    return rows[0]


def _groups(d) -> dict:
    return {int(g["group"]): g for g in d.cli_json("group", "list")}


def _controller(d) -> dict:
    return d.status()["controller"]


def _users_by_backend(d, count: int) -> dict:
    """Logs in user1..userN once each; returns backend -> [users]."""
    where: dict = {}
    for i in range(1, count + 1):
        user = f"user{i}"
        c = d.login(user)
        try:
            where.setdefault(backend_of(c), []).append(user)
        finally:
            close_quietly(c)
    return where


def _try_login(d, user: str, timeout: float = 5):
    """The backend a login of user lands on, or None if it fails now."""
    try:
        c = imap_login(d.imap_port, user, timeout=timeout)
    except (imaplib.IMAP4.error, OSError, AssertionError):
        return None
    try:
        return backend_of(c)
    finally:
        close_quietly(c)


def _wait_controller_ready(d) -> None:
    """The daemon holds the lease and has passed over every backend with alternatives."""
    wait_for(lambda: _controller(d)["me"] and _controller(d)["passes"] >= 2, WAIT,
             message="the daemon to be controller and to have run its passes")
    wait_for(lambda: all(g["alt_backend"] for g in _groups(d).values()), WAIT,
             message="every assigned group to have an alternative backend")


def test_short_outage_moves_nobody_long_one_fails_over_and_nothing_moves_back(cluster, fleet):
    d = cluster(**SETTINGS)
    where = _users_by_backend(d, 40)
    assert len(where) == 3, where
    _wait_controller_ready(d)
    victim = fleet.backend(sorted(where)[0])
    victim_users = where[victim.name]
    before = _groups(d)

    # ---- a 10 s outage: below backend_failover_delay (15 s)
    victim.stop()
    try:
        time.sleep(10)
        row = _backend_row(d, victim.name)
        assert row["mark"] == "up", row
    finally:
        victim.start()
    wait_for(lambda: all(o["health"] == "ok"
                         for o in _backend_row(d, victim.name)["observations"]), WAIT,
             message=f"{victim.name} seen ok again")
    time.sleep(2)  # a few more controller passes
    after = _groups(d)
    assert {g: r["backend"] for g, r in after.items()} == \
        {g: r["backend"] for g, r in before.items()}, "a short outage moved groups"
    m = d.metrics()
    assert m['mailcluster_backend_marks_total{mark="down"}'] == 0, m
    assert m["mailcluster_group_failovers_total"] == 0, m
    for user in victim_users[:3]:
        assert _try_login(d, user) == victim.name

    # ---- a long outage: marked down after the delay, its users log in elsewhere
    # a client logged in on the victim when it dies
    idle = imap_login(d.imap_port, victim_users[0])
    victim.stop()
    died = time.monotonic()
    try:
        user = victim_users[1]
        landed = wait_for(lambda: _try_login(d, user), FAILOVER_DELAY + WAIT, interval=0.2,
                          message=f"{user} (of {victim.name}) to log in elsewhere")
        took = time.monotonic() - died
        print(f"\nbackend death -> first successful login elsewhere: {took:.1f} s "
              f"(backend_failover_delay {FAILOVER_DELAY} s, probe_interval 1 s)")
        assert landed != victim.name
        assert took >= FAILOVER_DELAY - 2, f"failed over after {took:.1f} s: too early"
        row = _backend_row(d, victim.name)
        assert row["mark"] == "down", row
        assert "failing" in row["mark_reason"] and "backend_failover_delay" in \
            row["mark_reason"], row
        assert re.search(rf'event=backend_marked backend={victim.name} site=dc1 mark=down '
                         rf'reason="[^"]*failing', d.log_text())
        # every group of the victim moves at once, to another backend
        groups = wait_for(lambda: (lambda g: g if all(
            r["backend"] != victim.name for r in g.values()) else None)(_groups(d)), WAIT,
            message=f"every group off {victim.name}")
        moved = {g for g, r in before.items() if r["backend"] == victim.name}
        assert moved and all(groups[g]["backend"] != victim.name for g in moved)
        for u in victim_users:
            assert _try_login(d, u) not in (None, victim.name), u
        m = d.metrics()
        assert m['mailcluster_backend_marks_total{mark="down"}'] == 1, m
        assert m["mailcluster_group_failovers_total"] == len(moved), m
    finally:
        close_quietly(idle)
        victim.start()

    # ---- it comes back: marked up again, nobody moves back
    wait_for(lambda: _backend_row(d, victim.name)["mark"] == "up", WAIT,
             message=f"{victim.name} marked up again")
    time.sleep(3)
    final = _groups(d)
    for g in moved:
        assert final[g]["backend"] == groups[g]["backend"], (g, final[g], groups[g])
    for u in victim_users:
        assert _try_login(d, u) not in (None, victim.name), u
    assert re.search(rf'event=backend_marked backend={victim.name} site=dc1 mark=up',
                     d.log_text())


def _idle(c: imaplib.IMAP4) -> None:
    c.select("INBOX")
    tag = c._new_tag()
    c.send(tag + b" IDLE\r\n")
    line = c.readline()
    assert line.startswith(b"+"), line


def test_move_while_idle_gives_bye_and_reconnect_lands_on_new_backend(cluster, fleet):
    d = cluster(**SETTINGS)
    user = "user7"
    c = imap_login(d.imap_port, user)
    old = backend_of(c)
    group = d.cli_json("user", "status", user)[0]["group"]
    target = next(b.name for b in fleet.backends if b.name != old)
    _idle(c)
    started = time.monotonic()
    r = d.cli("group", "move", "--wait", "yes", str(group), target)
    assert r.returncode == 0, r.stderr
    assert f"moving from {old} to {target}" in r.stdout, r.stdout
    c.sock.settimeout(30)
    line = c.readline()
    assert line.startswith(b"* BYE"), line
    assert b"moving" in line, line
    print(f"\nmove with an IDLE client: BYE after {time.monotonic() - started:.1f} s")
    close_quietly(c)
    assert _try_login(d, user) == target
    log = d.log_text()
    assert re.search(rf"event=move_seen group={group} from={old} to={target}", log)
    assert re.search(rf"event=session_moved user={user} group={group} backend={old}", log)
    assert re.search(rf"event=move_finished group={group} from={old} to={target} "
                     rf"outcome=acknowledged", log)
    row = _groups(d)[int(group)]
    assert row["backend"] == target and row["move_to"] == "", row
    # the group remembers where it was (metacache affinity) and when it moved
    assert row["history"].startswith(f"{old}@"), row
    assert row["moved_at"] != "-" and row["sticky"] == "no", row
    status = d.cli_json("user", "status", user)[0]
    assert status["last_backend"] == old, status
    m = d.metrics()
    assert m['mailcluster_moves_finished_total{outcome="acknowledged"}'] >= 1, m
    assert m["mailcluster_move_acks_total"] >= 1, m


def test_logins_are_held_during_a_move(cluster, fleet):
    """While the group moves, its logins wait (not refused) and then land on the target."""
    d = cluster(**SETTINGS)
    user = "user11"
    old = _try_login(d, user)
    group = d.cli_json("user", "status", user)[0]["group"]
    target = next(b.name for b in fleet.backends if b.name != old)
    r = d.cli("group", "move", "--wait", "no", str(group), target)
    assert r.returncode == 0, r.stderr
    started = time.monotonic()
    # held until the switch, then the new backend
    assert _try_login(d, user, timeout=30) == target
    print(f"\nlogin held during a move for {time.monotonic() - started:.1f} s")
    moves = d.status()["moves"]
    assert moves["holds"] == 1 and moves["holds_expired"] == 0, moves
    assert d.metrics()["mailcluster_move_holds_total"] == 1


def test_evacuate_moves_every_group_at_move_rate(cluster, fleet):
    d = cluster(**SETTINGS)
    where = _users_by_backend(d, 30)
    victim = sorted(where)[0]
    sessions = [imap_login(d.imap_port, u) for u in where[victim][:3]]
    try:
        _wait_controller_ready(d)
        count = sum(1 for g in _groups(d).values() if g["backend"] == victim)
        started = time.monotonic()
        r = d.cli("backend", "evacuate", "--rate", "5", victim)
        took = time.monotonic() - started
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"{count} group(s) to move at 5 per second" in r.stdout, r.stdout
        assert f"backend {victim}: evacuated ({count} group(s) moved)" in r.stdout, r.stdout
        assert took >= (count - 1) / 5 - 0.5, f"{count} groups in {took:.1f} s"
        print(f"\nevacuate: {count} groups in {took:.1f} s at move_rate 5")
        assert all(g["backend"] != victim for g in _groups(d).values())
        assert _backend_row(d, victim)["load_factor"] == "0"
        for c in sessions:  # each got a BYE (or the socket closed)
            c.sock.settimeout(10)
            data = b""
            try:
                data = c.readline()
            except OSError:
                pass
            assert data == b"" or data.startswith(b"* BYE"), data
        for u in where[victim]:
            assert _try_login(d, u) not in (None, victim), u
    finally:
        for c in sessions:
            close_quietly(c)
        d.cli("backend", "update", "--load-factor", "100", victim)


def test_lmtp_transaction_in_flight_delays_the_acknowledgement(cluster, fleet):
    d = cluster(protocols=("imap", "lmtp"), **SETTINGS)
    user = "user21"
    old = _try_login(d, user)
    group = d.cli_json("user", "status", user)[0]["group"]
    target = next(b.name for b in fleet.backends if b.name != old)
    lmtp = _lmtp_transaction(d, user)
    try:
        r = d.cli("group", "move", "--wait", "no", str(group), target)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: d.status()["moves"]["moves_seen"] >= 1, WAIT,
                 message="the daemon to see the move")
        time.sleep(3)
        # the transaction is open: no acknowledgement, the group still moving
        assert d.status()["moves"]["acks_pending"] == 1
        assert _groups(d)[int(group)]["move_to"] == target
        code, _ = lmtp.docmd("DATA")
        assert code == 354
        lmtp.send(b"Subject: in flight\r\n\r\ndelivered during a move\r\n.\r\n")
        code, reply = lmtp.getreply()
        assert code == 250, reply
    finally:
        try:
            lmtp.quit()
        except Exception:
            pass
    wait_for(lambda: _groups(d)[int(group)]["backend"] == target, WAIT,
             message="the move to finish once the LMTP transaction is over")
    assert re.search(rf"event=move_finished group={group} from={old} to={target} "
                     rf"outcome=acknowledged", d.log_text())


def _lmtp_transaction(d, user: str) -> smtplib.LMTP:
    """An LMTP transaction left open after RCPT for user: the daemon's move of the
    user's group cannot be acknowledged until it is over."""
    lmtp = smtplib.LMTP("127.0.0.1", d.ports["lmtp"], timeout=30)
    lmtp.ehlo_or_helo_if_needed()
    assert lmtp.docmd("MAIL FROM:<sender@example.com>")[0] == 250
    assert lmtp.docmd(f"RCPT TO:<{user}>")[0] == 250
    return lmtp


def _kill(d) -> None:
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait(timeout=10)
    d.proc = None


def _holder(daemons):
    mine = [d for d in daemons if _controller(d)["me"]]
    return mine[0] if len(mine) == 1 else None


def test_two_daemons_on_cassandra_failover_moves_and_takeover(cluster, cassandra_node, fleet):
    """Two daemons of one site on Cassandra: the backend failure needs both (the majority) to
    see it; a move started while a client IDLEs on the daemon that is NOT the controller
    gives that client a BYE once that daemon has seen the move; both daemons acknowledge; the
    holder is killed and the other takes over and finishes the next move, no longer waiting
    for the dead daemon once its observations have gone stale."""
    spec = cassandra_node.spec(unique_keyspace("fo"))
    a = cluster(geodb=spec, localdb_refresh="1s", start_timeout=DAEMON_START, **SETTINGS)
    b = cluster(geodb=spec, setup=False, localdb_refresh="1s", start_timeout=DAEMON_START,
                **SETTINGS)
    holder = wait_for(lambda: _holder([a, b]), WAIT, message="one controller")
    other = b if holder is a else a
    where = _users_by_backend(other, 30)
    wait_for(lambda: _controller(holder)["live_daemons"] == 2, WAIT,
             message="the controller to count both daemons live")
    _wait_controller_ready(holder)

    # ---- failover with two daemons: both see it failing
    victim = fleet.backend(sorted(where)[-1])
    victim.stop()
    died = time.monotonic()
    try:
        user = where[victim.name][0]
        landed = wait_for(lambda: _try_login(other, user), FAILOVER_DELAY + WAIT,
                          interval=0.2, message=f"{user} to log in elsewhere")
        took = time.monotonic() - died
        print(f"\nCassandra, 2 daemons: backend death -> first login elsewhere: {took:.1f} s")
        assert landed != victim.name
        reason = _backend_row(holder, victim.name)["mark_reason"]
        assert reason.startswith("2 of 2 daemons"), reason
    finally:
        victim.start()
    wait_for(lambda: _backend_row(holder, victim.name)["mark"] == "up", WAIT,
             message=f"{victim.name} marked up again")

    # ---- a move with an IDLE client on the non-controller daemon
    user = where[sorted(where)[0]][0]
    c = imap_login(other.imap_port, user)
    old = backend_of(c)
    group = other.cli_json("user", "status", user)[0]["group"]
    target = next(bk.name for bk in fleet.backends if bk.name not in (old, victim.name))
    _idle(c)
    r = holder.cli("group", "move", "--wait", "yes", str(group), target)
    assert r.returncode == 0, r.stdout + r.stderr
    c.sock.settimeout(30)
    line = c.readline()
    assert line.startswith(b"* BYE"), line
    close_quietly(c)
    assert _try_login(other, user) == target
    assert re.search(rf'event=move_finished group={group} from={old} to={target} '
                     rf'outcome=acknowledged .*reason="2 of 2 live daemons acknowledged',
                     holder.log_text())
    for d in (a, b):
        assert re.search(rf"event=move_ack group={group} ", d.log_text()), d.name

    # ---- the controller is killed: the other takes over and finishes the next move
    _kill(holder)
    wait_for(lambda: _controller(other)["me"], WAIT, message="the other daemon to take over")
    user2 = next(u for u in where[old] if u != user)
    group2 = other.cli_json("user", "status", user2)[0]["group"]
    back = _try_login(other, user2)
    target2 = next(bk.name for bk in fleet.backends if bk.name != back)
    r = other.cli("group", "move", "--wait", "yes", str(group2), target2)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _try_login(other, user2) == target2
    assert re.search(rf'event=move_finished group={group2} from={back} to={target2} '
                     rf'outcome=acknowledged .*reason="1 of 1 live daemons',
                     other.log_text())


def test_move_ends_pop3_and_managesieve_sessions_with_their_goodbyes(cluster, fleet):
    from test_sieve import ManageSieve
    import poplib
    d = cluster(protocols=("imap", "pop3", "sieve"), **SETTINGS)
    user = "user33"
    old = _try_login(d, user)
    group = d.cli_json("user", "status", user)[0]["group"]
    target = next(b.name for b in fleet.backends if b.name != old)
    p = poplib.POP3("127.0.0.1", d.ports["pop3"], timeout=30)
    p.user(user)
    p.pass_("password")
    s = ManageSieve(d.ports["sieve"], timeout=30)
    ok = s.authenticate(user)
    assert ok.startswith(b"OK"), ok
    r = d.cli("group", "move", "--wait", "yes", str(group), target)
    assert r.returncode == 0, r.stdout + r.stderr
    line = p.file.readline()
    assert line.startswith(b"-ERR [IN-USE]") and b"moving" in line, line
    _, bye = s.response()
    assert bye.startswith(b"BYE") and b"moving" in bye, bye
    p.close()
    s.close()
    p2 = poplib.POP3("127.0.0.1", d.ports["pop3"], timeout=30)
    p2.user(user)
    assert p2.pass_("password").startswith(b"+OK")
    p2.quit()
    assert _try_login(d, user) == target


def test_move_kicks_through_doveadm_and_runs_the_hook(cluster, fleet, tmp_path):
    """A session the proxies do not know (logged in on the backend directly: another
    proxy, a cut-off one) is kicked by the controller through Dovecot's doveadm HTTP API
    before the group switches, and move_hook runs with the move's variables."""
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
    from backends import DOVEADM_API_KEY
    from mchelpers import FLEET_DOVEADM_PORT
    hook_out = tmp_path / "hook.txt"
    d = cluster(backend_doveadm_url=f"http://%{{address}}:{FLEET_DOVEADM_PORT}/doveadm/v1",
                backend_doveadm_api_key=DOVEADM_API_KEY,
                move_hook=f"echo user=%{{user}} group=%{{group}} from=%{{from}} to=%{{to}} "
                          f"last=%{{last_backend}} left=%{{last_backend_left}} >> {hook_out}",
                **SETTINGS)
    user = "user41"
    old = _try_login(d, user)
    group = d.cli_json("user", "status", user)[0]["group"]
    target = next(b.name for b in fleet.backends if b.name != old)
    backend = fleet.backend(old)
    direct = imap_login(backend.ports["imap"], user, host=backend.ip)
    _idle(direct)
    r = d.cli("group", "move", "--wait", "yes", str(group), target)
    assert r.returncode == 0, r.stdout + r.stderr
    direct.sock.settimeout(20)
    line = direct.readline()
    assert line.startswith(b"* BYE"), line  # Dovecot's own goodbye: kicked there
    close_quietly(direct)
    log = d.log_text()
    assert re.search(rf"event=move_kick group={group} backend={old} kicked=1", log), log[-3000:]
    assert re.search(rf"event=move_hook group={group} from={old} to={target} exit=0", log)
    # a group that was never moved has no last backend
    assert hook_out.read_text() == f"user= group={group} from={old} to={target} last= left=\n"
    m = d.metrics()
    assert m['mailcluster_move_doveadm_kicks_total{result="ok"}'] == 1, m
    assert m['mailcluster_move_hook_runs_total{result="ok"}'] == 1, m
    assert _try_login(d, user) == target
    # moved on again: the hook learns where the group was before (its caches may be warm)
    third = next(b.name for b in fleet.backends if b.name not in (old, target))
    moved_at = time.time()
    r = d.cli("group", "move", "--wait", "yes", str(group), third)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = hook_out.read_text().splitlines()
    assert len(lines) == 2, lines
    m2 = re.fullmatch(rf"user= group={group} from={target} to={third} last={old} left=(\d+)",
                      lines[1])
    assert m2, lines
    assert moved_at - 120 < int(m2.group(1)) <= moved_at + 1, (m2.group(1), moved_at)


def test_failing_hook_and_unreachable_doveadm_do_not_stop_the_move(cluster, fleet):
    d = cluster(backend_doveadm_url="http://127.0.0.1:1/doveadm/v1",
                backend_doveadm_api_key="k", move_hook="echo oops; exit 3", **SETTINGS)
    user = "user43"
    old = _try_login(d, user)
    group = d.cli_json("user", "status", user)[0]["group"]
    target = next(b.name for b in fleet.backends if b.name != old)
    r = d.cli("group", "move", "--wait", "yes", str(group), target)
    assert r.returncode == 0, r.stdout + r.stderr
    log = d.log_text()
    assert re.search(rf'event=move_kick_failed group={group} backend={old} reason="[^"]*'
                     rf'connection refused', log), log[-3000:]
    assert re.search(rf'event=move_hook_failed group={group} from={old} to={target} '
                     rf'reason="[^"]*3[^"]*" output="oops"', log), log[-3000:]
    assert re.search(rf"event=move_finished group={group} from={old} to={target} "
                     rf"outcome=acknowledged", log)
    m = d.metrics()
    assert m['mailcluster_move_doveadm_kicks_total{result="failed"}'] == 1, m
    assert m['mailcluster_move_hook_runs_total{result="failed"}'] == 1, m
    assert _try_login(d, user) == target


def test_move_that_times_out_finishes_anyway_and_says_so(cluster, fleet):
    """An LMTP transaction that stays open keeps this daemon from acknowledging: the move
    finishes after move_timeout with outcome=timeout (a warning), and a login held meanwhile
    waits at most move_timeout and lands on the target."""
    d = cluster(protocols=("imap", "lmtp"), **dict(SETTINGS, move_timeout="5s"))
    user = "user45"
    old = _try_login(d, user)
    group = d.cli_json("user", "status", user)[0]["group"]
    target = next(b.name for b in fleet.backends if b.name != old)
    lmtp = _lmtp_transaction(d, user)
    try:
        r = d.cli("group", "move", "--wait", "no", str(group), target)
        assert r.returncode == 0, r.stderr
        started = time.monotonic()
        assert _try_login(d, user, timeout=30) == target
        held = time.monotonic() - started
        print(f"\nlogin held by a move that timed out: {held:.1f} s (move_timeout 5 s)")
        assert held < 5 + 2.5, held
        wait_for(lambda: _groups(d)[int(group)]["backend"] == target, WAIT,
                 message="the move to finish after move_timeout")
        assert re.search(rf'level=warning event=move_finished group={group} from={old} '
                         rf'to={target} outcome=timeout .*reason="only 0 of 1 live daemons '
                         rf'acknowledged within move_timeout 5000 ms: finishing anyway"',
                         d.log_text()), d.log_text()[-3000:]
        assert d.metrics()['mailcluster_moves_finished_total{outcome="timeout"}'] == 1
    finally:
        try:
            lmtp.quit()
        except Exception:
            pass


def test_user_move_closes_the_users_sessions_and_holds_its_logins(cluster, fleet):
    d = cluster(**SETTINGS)
    user = "user51"
    c = imap_login(d.imap_port, user)
    old = backend_of(c)
    # a group on another backend, assigned by logging in one of its users
    other_user, target_group, target = None, None, None
    for i in range(100, 200):
        b = _try_login(d, f"user{i}")
        if b not in (None, old):
            other_user = f"user{i}"
            target = b
            target_group = d.cli_json("user", "status", other_user)[0]["group"]
            break
    assert other_user, "no user on another backend"
    _idle(c)
    r = d.cli("user", "move", user, str(target_group))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"to group {target_group} (backend {target}); its logins are held" in r.stdout, \
        r.stdout
    started = time.monotonic()
    assert _try_login(d, user, timeout=30) == target
    held = time.monotonic() - started
    c.sock.settimeout(20)
    line = c.readline()
    assert line.startswith(b"* BYE [UNAVAILABLE]"), line
    close_quietly(c)
    print(f"\nuser move: login held {held:.2f} s")
    assert 0.3 < held < 5, held
    assert re.search(rf"event=session_moved user={user} group=\d+ backend={old} "
                     rf'.*reason="user moved from group \d+ to group {target_group} on '
                     rf'{target}"', d.log_text())
    row = d.cli_json("user", "status", user)[0]
    assert row["group"] == str(target_group) and row["override"] == "yes", row
    assert row["last_backend"] == old and row["left_at"] != "-", row


def test_user_move_kicks_through_doveadm_runs_the_hook_then_releases(cluster, fleet, tmp_path):
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
    from backends import DOVEADM_API_KEY
    from mchelpers import FLEET_DOVEADM_PORT
    hook_out = tmp_path / "hook.txt"
    d = cluster(backend_doveadm_url=f"http://%{{address}}:{FLEET_DOVEADM_PORT}/doveadm/v1",
                backend_doveadm_api_key=DOVEADM_API_KEY,
                move_hook=f"sleep 1; echo user=%{{user}} group=%{{group}} from=%{{from}} "
                          f"to=%{{to}} last=%{{last_backend}} >> {hook_out}",
                **SETTINGS)
    user = "user53"
    old = _try_login(d, user)
    target_group, target = None, None
    for i in range(200, 260):
        b = _try_login(d, f"user{i}")
        if b not in (None, old):
            target = b
            target_group = d.cli_json("user", "status", f"user{i}")[0]["group"]
            break
    assert target
    backend = fleet.backend(old)
    direct = imap_login(backend.ports["imap"], user, host=backend.ip)
    _idle(direct)
    r = d.cli("user", "move", user, str(target_group))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"user {user}: 1 kicked on {old} through doveadm" in r.stdout, r.stdout
    assert f"user {user}: move_hook ran (exit 0)" in r.stdout, r.stdout
    direct.sock.settimeout(20)
    assert direct.readline().startswith(b"* BYE")
    close_quietly(direct)
    assert hook_out.read_text() == \
        f"user={user} group={target_group} from={old} to={target} last=\n"
    # the hold is released: a login goes through at once
    started = time.monotonic()
    assert _try_login(d, user, timeout=30) == target
    assert time.monotonic() - started < 1.0
    assert d.cli_json("user", "status", user)[0]["group"] == str(target_group)
    # a second move: the hook learns the backend the user was on before (recorded by the
    # first move)
    third_group, third = None, None
    for i in range(200, 260):
        b = _try_login(d, f"user{i}")
        if b not in (None, old, target):
            third = b
            third_group = d.cli_json("user", "status", f"user{i}")[0]["group"]
            break
    assert third
    r = d.cli("user", "move", user, str(third_group))
    assert r.returncode == 0, r.stdout + r.stderr
    assert hook_out.read_text().splitlines()[1] == \
        f"user={user} group={third_group} from={target} to={third} last={old}"
    assert _try_login(d, user, timeout=30) == third
    rows = [u for u in d.cli_json("user", "status", user)]
    assert rows[0]["group"] == str(third_group), rows
    assert rows[0]["last_backend"] == target, rows


def test_move_whose_target_goes_offline_is_cancelled(cluster, fleet):
    d = cluster(protocols=("imap", "lmtp"), **SETTINGS)
    user = "user47"
    old = _try_login(d, user)
    group = d.cli_json("user", "status", user)[0]["group"]
    target = next(b.name for b in fleet.backends if b.name != old)
    lmtp = _lmtp_transaction(d, user)
    try:  # keeps the move waiting
        assert d.cli("group", "move", "--wait", "no", str(group), target).returncode == 0
        assert d.cli("backend", "update", "--status", "offline", target).returncode == 0
        wait_for(lambda: _groups(d)[int(group)]["move_to"] == "", WAIT,
                 message="the move to be cancelled")
        assert _groups(d)[int(group)]["backend"] == old
        assert re.search(rf'event=move_cancelled group={group} backend={old} reason="its '
                         rf'target {target} is offline and marked up"', d.log_text())
    finally:
        try:
            lmtp.quit()
        except Exception:
            pass
        d.cli("backend", "update", "--status", "online", target)
    assert _try_login(d, user, timeout=30) == old


# ---- metacache affinity (issue 6): a group goes back where its caches are warm

def _users_in_distinct_groups(d, users: list, count: int) -> list:
    """(user, group) for count users of the list whose groups differ."""
    seen, picked = set(), []
    for user in users:
        group = int(d.cli_json("user", "status", user)[0]["group"])
        if group not in seen:
            seen.add(group)
            picked.append((user, group))
        if len(picked) == count:
            return picked
    raise AssertionError(f"fewer than {count} distinct groups among {users}")


def _group_counts(d) -> dict:
    counts: dict = {}
    for g in _groups(d).values():
        if g["backend"] not in ("", "-"):
            counts[g["backend"]] = counts.get(g["backend"], 0) + 1
    return counts


def test_metacache_failover_goes_back_to_the_backend_that_held_the_group(cluster, fleet):
    """Groups moved from a to b get a as their failover alternative (a held them lately), and
    when b dies they go back to a, not wherever the spread alone would send them."""
    d = cluster(**dict(SETTINGS, backend_failover_delay="3s"))
    where = _users_by_backend(d, 40)
    _wait_controller_ready(d)
    a, b = sorted(where)[:2]
    moved = _users_in_distinct_groups(d, where[a], 3)
    for _, group in moved:
        r = d.cli("group", "move", "--direct", str(group), b)
        assert r.returncode == 0, r.stdout + r.stderr
    for _, group in moved:
        history = _groups(d)[group]["history"]
        assert history.startswith(f"{a}@"), history
        wait_for(lambda: _groups(d)[group]["alt_backend"] == a, WAIT,
                 message=f"group {group} (left {a} for {b}) to get {a} as its alternative")
    # b's own groups keep spreading over both others: warmth is per group
    alts = {g["alt_backend"] for g in _groups(d).values()
            if g["backend"] == b and int(g["group"]) not in {grp for _, grp in moved}}
    assert len(alts) == 2, alts
    victim = fleet.backend(b)
    victim.stop()
    try:
        for user, group in moved:
            landed = wait_for(lambda: (lambda x: x if x not in (None, b) else None)(
                _try_login(d, user)), WAIT, interval=0.3,
                message=f"{user} (group {group}) to log in after {b} died")
            assert landed == a, (user, group, landed)
            assert _groups(d)[group]["backend"] == a
    finally:
        victim.start()


def test_metacache_groups_placed_again_after_their_backend_is_removed_go_back(cluster, fleet):
    """Groups moved from a to b, b removed: at their next login they are placed on a (it held
    them lately) although the spread alone would pick c, which has fewer groups."""
    d = cluster(**SETTINGS)
    where = _users_by_backend(d, 60)
    a, b = sorted(where)[:2]
    c = next(name for name in where if name not in (a, b))
    moved = _users_in_distinct_groups(d, where[a], 2)
    for _, group in moved:
        assert d.cli("group", "move", "--direct", str(group), b).returncode == 0
    # make a hold exactly one group more than c (moving groups between a and b, which goes):
    # the spread alone would choose c
    rows = _groups(d)
    per = _group_counts(d)
    keep = {grp for _, grp in moved}
    if per[a] <= per[c]:
        take = [g for g, r in rows.items() if r["backend"] == b and g not in keep]
        for g in take[:per[c] - per[a] + 1]:
            assert d.cli("group", "move", "--direct", str(g), a).returncode == 0
    else:
        give = [g for g, r in rows.items() if r["backend"] == a]
        for g in give[:per[a] - per[c] - 1]:
            assert d.cli("group", "move", "--direct", str(g), b).returncode == 0
    per = _group_counts(d)
    assert per[a] == per[c] + 1, per
    assert per[c] >= 9, per  # the allowance (10% + 1 group) then covers both groups
    assert d.cli("backend", "update", "--status", "offline", b).returncode == 0
    r = d.cli("backend", "remove", b)
    assert r.returncode == 0, r.stdout + r.stderr
    for user, group in moved:
        landed = wait_for(lambda: _try_login(d, user), WAIT, interval=0.3,
                          message=f"{user} (group {group}) to be placed again")
        assert landed == a, (user, group, landed, per)
        row = _groups(d)[group]
        assert row["backend"] == a, row
        assert b in row["history"] and a in row["history"], row
