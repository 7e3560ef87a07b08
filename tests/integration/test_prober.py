"""The backend prober (issue 5, "Probing"): every daemon probes the backends of its site and
shows what it saw in /api/status, /metrics and, through the GeoDB, `backend status`.

Real Dovecot backends from the shared fleet; a test that stops one restarts it in a finally
(the autouse _fleet_healthy fixture catches any that did not). Every wait is bounded; no test
asserts how long anything took.
"""

from __future__ import annotations

import imaplib
import re
import socket
import time

from mchelpers import close_quietly, imap_login, login_lands_on, wait_for

PROBE = {"probe_interval": "500ms", "probe_timeout": "2s"}
LOGIN_PROBE = {"probe_interval": "500ms", "probe_timeout": "3s"}
# Dovecot answers a failed login only after auth_failure_delay (2 s), later still when other
# failures are queued before it: the probe must outlast that.
FAILING_LOGIN_PROBE = {"probe_interval": "1s", "probe_timeout": "15s"}
WAIT = 20  # seconds for a probe verdict to show (many probe intervals)


def _observer(d):
    """How the daemon names itself in its observations: its writer name (main.c: "%.40s/%.20s"
    of host and site) and its pid, one observer per daemon process."""
    return f"{socket.gethostname()[:40]}/dc1/{d.proc.pid}"


def _probes(d) -> dict:
    return {p["backend"]: p for p in d.status()["probes"]}


def _observations(d, backend) -> list:
    rows = d.cli_json("backend", "status", backend)
    assert len(rows) == 1 and rows[0]["backend"] == backend, rows
    return rows[0]["observations"]


def _all_ok(d, names) -> bool:
    probes = _probes(d)
    return all(n in probes and probes[n]["ok"] for n in names)


def _failing(d, name, *words):
    """The probe of name, if it is failing with every word in its detail."""
    p = _probes(d).get(name)
    if p and not p["ok"] and all(w in p["detail"] for w in words):
        return p
    return None


def test_every_backend_of_the_site_is_seen_ok(cluster, fleet):
    d = cluster(**PROBE)
    names = [b.name for b in fleet.backends]
    wait_for(lambda: _all_ok(d, names), WAIT, message="every backend probed ok (/api/status)")

    probes = _probes(d)
    assert sorted(probes) == sorted(names), probes
    for b in fleet.backends:
        p = probes[b.name]
        assert p["address"] == b.ip and p["detail"] == "" and p["failures"] == 0, p
        assert 0 < p["since"] <= p["observed_at"] <= time.time() + 1, p

    # The same observations in the GeoDB, from this daemon (the only one on this GeoDB).
    for b in fleet.backends:
        obs = wait_for(lambda: _observations(d, b.name), WAIT,
                       message=f"an observation of {b.name} in the GeoDB")
        assert [(o["observer"], o["health"], o["detail"]) for o in obs] == \
            [(_observer(d), "ok", "")], obs
        assert re.fullmatch(r"\d+s", obs[0]["age"]) and obs[0]["since"].endswith("Z"), obs

    m = d.metrics()
    for b in fleet.backends:
        assert m[f'mailcluster_backend_probe_ok{{backend="{b.name}"}}'] == 1, m
    assert m['mailcluster_backend_probes_total{result="ok"}'] >= len(names), m
    assert m['mailcluster_backend_probes_total{result="failed"}'] == 0, m
    assert m["mailcluster_backend_probe_write_failures_total"] == 0, m
    # Probes are not logins: the login counters do not see them.
    assert m["mailcluster_backend_connect_failures_total"] == 0, m
    assert m['mailcluster_logins_total{result="ok"}'] == 0, m

    # The other output formats print the observations as a second table.
    table = d.cli("backend", "status", names[0])
    assert table.returncode == 0, table.stderr
    assert re.search(r"^observer +health +since +age +detail$", table.stdout, re.M), table.stdout
    assert re.search(rf"^{re.escape(_observer(d))} +ok ", table.stdout, re.M), table.stdout
    flow = d.cli("backend", "status", names[0], fmt="flow")
    assert f"observer={_observer(d)} health=ok " in flow.stdout, flow.stdout
    assert "event=probe_failing" not in d.log_text()


def test_stopped_backend_turns_failing_and_recovers(cluster, fleet):
    d = cluster(**PROBE)
    names = [b.name for b in fleet.backends]
    wait_for(lambda: _all_ok(d, names), WAIT, message="every backend probed ok")
    victim = fleet.backends[1]
    others = [n for n in names if n != victim.name]

    victim.stop()
    try:
        failing = wait_for(lambda: _failing(d, victim.name, "connect", "refused"), WAIT,
                           message=f"{victim.name} to be seen failing with a refused connect")
        probes = _probes(d)
        assert all(probes[n]["ok"] for n in others), probes
        assert failing["failures"] >= 1, failing
        obs = wait_for(lambda: [o for o in _observations(d, victim.name)
                                if o["health"] == "failing"], WAIT,
                       message=f"{victim.name} failing in the GeoDB")
        assert "refused" in obs[0]["detail"], obs
        for n in others:
            assert [o["health"] for o in _observations(d, n)] == ["ok"], n
        # (the first failing probe may have met Dovecot shutting down: "connection reset by
        # peer before the greeting"; the detail follows the latest probe)
        assert re.search(rf'event=probe_failing backend={victim.name} address={victim.ip} '
                         rf'detail="[^"]+"', d.log_text())
        m = d.metrics()
        assert m[f'mailcluster_backend_probe_ok{{backend="{victim.name}"}}'] == 0, m
        assert m['mailcluster_backend_probes_total{result="failed"}'] >= 1, m
        time.sleep(1.1)  # "since" has whole seconds: let the clock pass one
    finally:
        victim.start()

    ok = wait_for(lambda: _probes(d)[victim.name]["ok"] and _probes(d)[victim.name], WAIT,
                  message=f"{victim.name} to be seen ok again")
    assert ok["since"] > failing["since"], (failing, ok)
    assert ok["detail"] == "" and ok["failures"] == 0, ok
    assert re.search(rf"event=probe_ok backend={victim.name} .*after_failing=\d+s", d.log_text())
    wait_for(lambda: [o["health"] for o in _observations(d, victim.name)] == ["ok"], WAIT,
             message=f"{victim.name} ok again in the GeoDB")
    # One state change each way: no log line per probe.
    assert len(re.findall(rf"event=probe_failing backend={victim.name} ", d.log_text())) == 1
    assert len(re.findall(rf"event=probe_ok backend={victim.name} ", d.log_text())) == 1


def _backend_logins(backend, user) -> int:
    return len(re.findall(rf"imap-login: Info: Login: user=<{re.escape(user)}>",
                          backend.log_text()))


def _logins_are_prompt(fleet) -> bool:
    """Every backend logs user2 in within a second (no failed logins queued before it)."""
    for b in fleet.backends:
        try:
            c = imap_login(fleet.ports["imap"], "user2", host=b.ip, timeout=1)
        except (OSError, imaplib.IMAP4.error):
            return False
        close_quietly(c)
    return True


def test_test_login(cluster, fleet):
    names = [b.name for b in fleet.backends]
    before = {b.name: _backend_logins(b, "user1") for b in fleet.backends}
    good = cluster(backend_test_username="user1", backend_test_password="password",
                   **LOGIN_PROBE)
    wait_for(lambda: _all_ok(good, names), WAIT, message="every test login ok")
    # the probes really logged in, on every backend
    wait_for(lambda: all(_backend_logins(b, "user1") > before[b.name] for b in fleet.backends),
             WAIT, message="user1 logins by the prober in every backend's log")
    assert good.stop() == 0

    # Failed logins are slow (Dovecot's auth_failure_delay) and hold up the backend's other
    # logins meanwhile: one failing daemon at a time, stopped as soon as it has seen them all.
    try:
        wrong = cluster(backend_test_username="user1", backend_test_password="wrong",
                        **FAILING_LOGIN_PROBE)
        for n in names:
            p = wait_for(lambda: _failing(wrong, n, "test login failed: NO"), WAIT + 10,
                         message=f"a failing test login on {n}")
            assert "AUTHENTICATIONFAILED" in p["detail"], p
        assert wrong.stop() == 0
        assert re.search(r'event=probe_failing backend=\S+ address=\S+ detail="test login '
                         r'failed: NO \[AUTHENTICATIONFAILED\]', wrong.log_text())
        assert "wrong" not in wrong.log_text()  # the test password is never logged

        # a user that exists nowhere: each backend's log shows its own name in it
        unknown = cluster(backend_test_username="probe-%{backend}", backend_test_password="x",
                          **FAILING_LOGIN_PROBE)
        for n in names:
            wait_for(lambda: _failing(unknown, n, "test login failed: NO"), WAIT + 10,
                     message=f"a failing test login on {n}")
        assert unknown.stop() == 0
        for b in fleet.backends:
            assert f"user=<probe-{b.name}>" in b.log_text(), f"no probe-{b.name} in {b.name}'s log"
    finally:
        for d in cluster.daemons:
            d.stop()
        # leave the shared fleet as we found it: no failed logins still queued
        wait_for(lambda: _logins_are_prompt(fleet), 60, interval=0.5,
                 message="every backend to log a user in promptly again")


def test_backend_with_nothing_listening(cluster, fleet):
    d = cluster(localdb_refresh="1s", **PROBE)
    names = [b.name for b in fleet.backends]
    wait_for(lambda: _all_ok(d, names), WAIT, message="every backend probed ok")
    # Added in standby: it is probed all the same.
    assert d.cli("backend", "add", "--site", "dc1", "ghost", "127.0.3.99").returncode == 0

    p = wait_for(lambda: _failing(d, "ghost", "connect: connection refused"), WAIT,
                 message="ghost to be seen failing")
    assert p["address"] == "127.0.3.99", p
    obs = wait_for(lambda: _observations(d, "ghost"), WAIT, message="ghost in the GeoDB")
    assert obs[0]["health"] == "failing", obs
    assert all(_probes(d)[n]["ok"] for n in names), _probes(d)

    # Logins of users on the other backends are not affected.
    for user in ("user5", "user6", "user7"):
        assert login_lands_on(d, user) in names
    assert d.metrics()["mailcluster_backend_connect_failures_total"] == 0

    # Removed from the site: no longer probed, gone from the daemon's view.
    assert d.cli("backend", "remove", "ghost").returncode == 0
    wait_for(lambda: "ghost" not in _probes(d), WAIT, message="ghost to leave the probes")
    failed = d.metrics()['mailcluster_backend_probes_total{result="failed"}']
    time.sleep(1.5)  # three probe intervals: no more failed probes
    assert d.metrics()['mailcluster_backend_probes_total{result="failed"}'] == failed
    assert all(_probes(d)[n]["ok"] for n in names), _probes(d)
