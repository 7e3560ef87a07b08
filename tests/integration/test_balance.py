"""Load balancing (issue 6) with real Dovecot backends and node_exporter-format endpoints.

- a backend set to load factor 0 is drained: every group leaves it through the move protocol;
- a backend brought online fills up to its share;
- `balance = dryrun` plans and logs without moving; `mailcluster balance plan` shows the plan
  with each backend's load, share and resources (scraped from per-backend endpoints that
  serve node_exporter's text format);
- a sticky group is never moved by balancing.

Each group's weight is what the daemons report: the sessions open to it and the logins since
the previous report.  Intervals are shortened (balance_interval 2s); every wait is bounded.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
import time

import pytest

from mchelpers import close_quietly, imap_login, wait_for

WAIT = 90
SETTINGS = {
    "balance": "on",  # the suite's daemons have it off by default
    "probe_interval": "1s",
    "controller_lease": "3s",
    "balance_interval": "2s",
    "balance_max_moves": "40",
    "group_min_stay": "0s",
    "move_timeout": "10s",
}


class NodeExporterPages:
    """Serves /BACKEND/metrics in node_exporter's text format, counters advancing with time:
    cpu_busy[backend] of the CPU time is non-idle."""

    def __init__(self, busy: dict):
        self.busy = busy
        self.start = time.monotonic()
        pages = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                m = re.match(r"^/([^/]+)/metrics$", self.path)
                if not m or m.group(1) not in pages.busy:
                    self.send_error(404)
                    return
                body = pages.page(m.group(1)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def page(self, backend: str) -> str:
        t = time.monotonic() - self.start + 1000.0
        busy = self.busy[backend]
        lines = ["# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.",
                 "# TYPE node_cpu_seconds_total counter"]
        for cpu in (0, 1):
            lines.append(f'node_cpu_seconds_total{{cpu="{cpu}",mode="idle"}} '
                         f'{t * (1 - busy):.3f}')
            lines.append(f'node_cpu_seconds_total{{cpu="{cpu}",mode="user"}} {t * busy:.3f}')
        lines += ["# TYPE node_memory_MemAvailable_bytes gauge",
                  "node_memory_MemAvailable_bytes 6.0e+09",
                  "# TYPE node_memory_MemTotal_bytes gauge",
                  "node_memory_MemTotal_bytes 8.0e+09",
                  "# TYPE node_disk_io_time_seconds_total counter",
                  f'node_disk_io_time_seconds_total{{device="sda"}} {t * 0.05:.3f}']
        return "\n".join(lines) + "\n"

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/%{{backend}}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _groups(d) -> list:
    return d.cli_json("group", "list")


def _on(d, backend: str) -> int:
    return sum(1 for g in _groups(d) if g["backend"] == backend)


def _open_sessions(d, users):
    sessions = []
    for u in users:
        sessions.append(imap_login(d.imap_port, u))
    return sessions


def _keep_sessions(d, users, sessions):
    """Sessions ended by a move are opened again (as a real client would)."""
    for i, c in enumerate(sessions):
        try:
            c.noop()
        except Exception:
            close_quietly(c)
            try:
                sessions[i] = imap_login(d.imap_port, users[i])
            except Exception:
                pass


@pytest.fixture
def pages(fleet):
    p = NodeExporterPages({b.name: 0.2 for b in fleet.backends})
    yield p
    p.close()


def test_load_factor_zero_backend_drains(cluster, fleet, pages):
    d = cluster(backend_metrics_url=pages.url(), metrics_interval="1s",
                metrics_min_samples="2", **SETTINGS)
    users = [f"user{i}" for i in range(60, 120)]
    sessions = _open_sessions(d, users)
    try:
        victim = fleet.backends[2].name
        before = _on(d, victim)
        assert before > 0
        assert d.cli("backend", "update", "--load-factor", "0", victim).returncode == 0

        def drained():
            _keep_sessions(d, users, sessions)
            return _on(d, victim) == 0
        wait_for(drained, WAIT, interval=1, message=f"{victim} to be drained")
        log = d.log_text()
        assert re.search(rf"event=balance_move dryrun=no group=\d+ from={victim} to=", log)
        assert re.search(r"event=move_finished .* move_reason=\"balance: ", log)
        for u in users[:10]:
            c = imap_login(d.imap_port, u)
            try:
                from mchelpers import backend_of
                assert backend_of(c) != victim
            finally:
                close_quietly(c)
        m = d.metrics()
        assert m['mailcluster_balance_moves_total{dryrun="no"}'] >= before, m
    finally:
        for c in sessions:
            close_quietly(c)


def test_new_backend_fills_up_to_its_share_and_plan_shows_resources(cluster, fleet, pages):
    d = cluster(backend_metrics_url=pages.url(), metrics_interval="1s",
                metrics_min_samples="2", **SETTINGS)
    newcomer = fleet.backends[2].name
    assert d.cli("backend", "update", "--status", "standby", newcomer).returncode == 0
    users = [f"user{i}" for i in range(120, 180)]
    sessions = _open_sessions(d, users)
    try:
        assert _on(d, newcomer) == 0
        assert d.cli("backend", "update", "--status", "online", newcomer).returncode == 0

        def filled():
            _keep_sessions(d, users, sessions)
            plan = json.loads(d.cli("balance", "plan", fmt="json").stdout)
            rows = {b["backend"]: b for b in plan["backends"]}
            # filled, and every backend's resources sampled (scraped every second)
            return rows[newcomer]["load"] > 0 and plan["max_ratio_before"] <= 1.10 and \
                all(r["samples"] >= 2 for r in rows.values()) and plan
        plan = wait_for(filled, WAIT, interval=1,
                        message=f"{newcomer} to fill up to its share")
        rows = {b["backend"]: b for b in plan["backends"]}
        print(f"\nafter filling: {[(n, r['load'], round(r['target'], 1)) for n, r in rows.items()]}")
        for r in rows.values():
            assert r["samples"] >= 2, r
            assert abs(r["cpu_busy"] - 0.2) < 0.05, r
            assert abs(r["mem_available"] - 0.75) < 0.01, r
        text = d.cli("balance", "plan")
        assert text.returncode == 0, text.stderr
        assert re.search(rf"^{newcomer}\s+\d+\.\d", text.stdout, re.M), text.stdout
        assert "samples" in text.stdout, text.stdout
    finally:
        for c in sessions:
            close_quietly(c)


def test_dryrun_moves_nothing_and_sticky_groups_stay(cluster, fleet, pages):
    d = cluster(**dict(SETTINGS, balance="dryrun"))
    users = [f"user{i}" for i in range(180, 220)]
    sessions = _open_sessions(d, users)
    try:
        victim = fleet.backends[0].name
        before = {g["group"]: g["backend"] for g in _groups(d)}
        assert d.cli("backend", "update", "--load-factor", "0", victim).returncode == 0
        wait_for(lambda: "event=balance_move dryrun=yes" in d.log_text(), WAIT,
                 message="a dry-run plan in the log")
        time.sleep(3)
        assert {g["group"]: g["backend"] for g in _groups(d)} == before
        assert d.metrics()['mailcluster_balance_moves_total{dryrun="no"}'] == 0
    finally:
        for c in sessions:
            close_quietly(c)
        d.cli("backend", "update", "--load-factor", "100", fleet.backends[0].name)

    # sticky: with balance on, the pinned group stays on the drained backend
    d2 = cluster(**SETTINGS)
    sessions = _open_sessions(d2, users[:20])
    try:
        victim = fleet.backends[1].name
        pinned = next(g["group"] for g in _groups(d2) if g["backend"] == victim)
        assert d2.cli("group", "update", "--sticky-backend", "yes", pinned).returncode == 0
        assert d2.cli("backend", "update", "--load-factor", "0", victim).returncode == 0
        wait_for(lambda: [g["group"] for g in _groups(d2) if g["backend"] == victim] ==
                 [pinned], WAIT, interval=1, message="everything but the sticky group to go")
        time.sleep(3)
        assert [g["group"] for g in _groups(d2) if g["backend"] == victim] == [pinned]
    finally:
        for c in sessions:
            close_quietly(c)
        d2.cli("backend", "update", "--load-factor", "100", fleet.backends[1].name)
