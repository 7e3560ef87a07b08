"""The controller lease (issue 5, "Controller"): one daemon per site holds the lease
"controller/<site>" in the GeoDB; when it dies another takes over within a few lease periods,
when it stops cleanly it releases the lease so that another takes over at once, and a daemon
that comes back does not take the lease from a live holder.

Two daemons of site dc1 on one GeoDB (SQLite, and one test on Cassandra).  Every wait is
bounded and generous; the takeover times are printed, not asserted tightly.
"""

from __future__ import annotations

import os
import signal
import time

from mchelpers import unique_keyspace, wait_for

LEASE = "3s"
LEASE_SECS = 3
SETTINGS = {"controller_lease": LEASE, "probe_interval": "1s"}
TAKEOVER_WAIT = 6 * LEASE_SECS  # a few lease periods: the wait, not the expected time
DAEMON_START = 30  # seconds: a daemon on Cassandra connects and reads the GeoDB first


def _controller(d) -> dict:
    return d.status()["controller"]


def _agreed_holder(daemons) -> object:
    """The daemon that holds the lease, once exactly one says so and every one names it."""
    views = [_controller(d) for d in daemons]
    mine = [d for d, v in zip(daemons, views) if v["me"]]
    if len(mine) != 1:
        return None
    holder = views[daemons.index(mine[0])]["holder"]
    if not holder or any(v["holder"] != holder for v in views):
        return None
    return mine[0]


def _kill(d) -> None:
    """SIGKILL by PID: no release, no goodbye; the daemon is forgotten by the cluster
    teardown until it is started again."""
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait(timeout=10)
    d.proc = None


def _check_one_holder(a, b) -> object:
    holder = wait_for(lambda: _agreed_holder([a, b]), TAKEOVER_WAIT, interval=0.1,
                      message="exactly one daemon to hold the controller lease")
    other = b if holder is a else a
    view = _controller(holder)
    assert view["lease"] == "controller/dc1", view
    assert view["expires_at"] > time.time() - 1, view
    m_holder, m_other = holder.metrics(), other.metrics()
    assert m_holder["mailcluster_controller"] == 1 and m_other["mailcluster_controller"] == 0
    assert m_holder["mailcluster_controller_elections_total"] >= 1
    assert "event=controller_elected site=dc1" in holder.log_text()
    return holder, other


def _takeover(survivor) -> float:
    start = time.monotonic()
    wait_for(lambda: _controller(survivor)["me"], TAKEOVER_WAIT, interval=0.05,
             message=f"{survivor.name} to take over the controller lease")
    return time.monotonic() - start


def test_one_holder_takeover_on_kill_and_no_steal_back(cluster):
    a = cluster(**SETTINGS)
    b = cluster(geodb=a.geodb_path, setup=False, **SETTINGS)
    holder, other = _check_one_holder(a, b)
    holder_name = _controller(holder)["holder"]

    _kill(holder)
    took = _takeover(other)
    print(f"\ntakeover after SIGKILL of the holder: {took:.2f} s (controller_lease {LEASE})")
    view = _controller(other)
    assert view["holder"] != holder_name and view["me"], view
    assert "event=controller_elected site=dc1" in other.log_text()

    # the killed one comes back: the live holder keeps the lease
    holder.start()
    deadline = time.monotonic() + 3 * LEASE_SECS
    saw_returner = False
    while time.monotonic() < deadline:
        back, kept = _controller(holder), _controller(other)
        assert not back["me"], back
        assert kept["me"], kept
        saw_returner |= back["holder"] == kept["holder"]
        time.sleep(0.2)
    assert saw_returner, "the restarted daemon never saw who holds the lease"
    assert holder.metrics()["mailcluster_controller_elections_total"] == 0
    assert "event=controller_lost" not in other.log_text()


def test_clean_stop_releases_the_lease(cluster):
    a = cluster(**SETTINGS)
    b = cluster(geodb=a.geodb_path, setup=False, **SETTINGS)
    holder, other = _check_one_holder(a, b)

    start = time.monotonic()
    assert holder.stop() == 0
    stopped = time.monotonic() - start
    assert "event=controller_released site=dc1" in holder.log_text()
    took = _takeover(other)
    print(f"\nSIGTERM took {stopped:.2f} s; takeover after it: {took:.2f} s "
          f"(controller_lease {LEASE})")


def test_cassandra_one_holder_and_takeover_on_kill(cluster, cassandra_node):
    spec = cassandra_node.spec(unique_keyspace("ctl"))
    a = cluster(geodb=spec, start_timeout=DAEMON_START, **SETTINGS)
    b = cluster(geodb=spec, setup=False, start_timeout=DAEMON_START, **SETTINGS)
    holder, other = _check_one_holder(a, b)
    holder_name = _controller(holder)["holder"]

    _kill(holder)
    took = _takeover(other)
    print(f"\nCassandra: takeover after SIGKILL of the holder: {took:.2f} s "
          f"(controller_lease {LEASE})")
    view = _controller(other)
    assert view["me"] and view["holder"] != holder_name, view
