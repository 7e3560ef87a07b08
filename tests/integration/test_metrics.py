"""Resource figures from a real node_exporter (Debian's prometheus-node-exporter, installed by
scripts/deps.sh), through build/metrics_tool (tests/tools/metrics_tool.c: net/metrics_scrape.c
and util/openmetrics.c):

* one scrape reads this host's CPUs, memory and disks as /proc shows them;
* two scrapes give plausible figures (0 <= cpu_busy <= 1, 0 < mem_available < 1,
  0 <= io_busy <= 1), and the CPU figure rises while every CPU is kept busy;
* several pairs average;
* a dead port, node_exporter's own HTML landing page, a text page that is not metrics, a 404
  and a silent server give the clear errors, within the timeout.

The module starts its own node_exporter on 127.0.3.200 (a free port) and stops it by its PID;
it never uses a system service on :9100.
"""

from __future__ import annotations

import http.server
import multiprocessing
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

import mchelpers
from mchelpers import wait_for

TOOL = os.path.join(mchelpers.REPO, "build", "metrics_tool")
IP = "127.0.3.200"


def _node_exporter_binary() -> str:
    for name in ("prometheus-node-exporter", "node_exporter"):
        path = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin")
        if path:
            return path
    pytest.fail("prometheus-node-exporter is missing: run scripts/deps.sh (Debian's "
                "prometheus-node-exporter package)", pytrace=False)


@pytest.fixture(scope="module")
def node_exporter(tmp_path_factory):
    if not os.access(TOOL, os.X_OK):
        pytest.fail(f"{TOOL} is missing: run 'make -C {mchelpers.REPO} all' first", pytrace=False)
    binary = _node_exporter_binary()
    port = mchelpers.free_port(IP)
    log_path = tmp_path_factory.mktemp("node_exporter") / "node_exporter.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([binary, f"--web.listen-address={IP}:{port}"], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: proc.poll() is not None or mchelpers.port_accepts(IP, port), 15,
                 message="node_exporter to listen")
        if proc.poll() is not None:
            log.flush()
            pytest.fail(f"node_exporter exited with {proc.returncode}: "
                        f"{open(log_path).read()[-2000:]}", pytrace=False)
        yield f"http://{IP}:{port}/metrics"
    finally:
        # only the process we started, by its PID
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def tool(*args: str, timeout_ms: int = 5000) -> subprocess.CompletedProcess:
    return mchelpers.spawn_retrying(subprocess.run, [TOOL, "-t", str(timeout_ms), *args],
                                    capture_output=True, text=True, timeout=60,
                                    stdin=subprocess.DEVNULL)


def figures(line: str) -> dict[str, float]:
    return {k: float(v) for k, v in (f.split("=", 1) for f in line.split())}


def proc_cpus() -> int:
    with open("/proc/stat") as f:
        return sum(1 for line in f if line.startswith("cpu") and line[3].isdigit())


def proc_meminfo() -> dict[str, int]:
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, rest = line.split(":", 1)
            out[key] = int(rest.split()[0]) * 1024
    return out


def test_one_sample_is_this_host(node_exporter):
    r = tool("sample", node_exporter)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    values = dict(line.split("=", 1) for line in lines if not line.startswith("disk="))
    assert int(values["cpu_count"]) == proc_cpus()
    assert int(values["mem_total_bytes"]) == proc_meminfo()["MemTotal"]
    assert 0 < int(values["mem_available_bytes"]) < int(values["mem_total_bytes"])
    assert float(values["cpu_idle_s"]) < float(values["cpu_total_s"])
    assert int(values["series"]) > 100
    with open("/proc/diskstats") as f:
        devices = {line.split()[2] for line in f}
    disks = [line.split()[0].split("=", 1)[1] for line in lines if line.startswith("disk=")]
    assert len(disks) == int(values["disks"])
    for d in disks:
        assert d in devices, (d, devices)
        assert not d.startswith(("loop", "ram", "zram", "fd", "sr")), d


def _burn(seconds: float) -> None:
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        x += 1


def test_two_scrapes_give_plausible_figures(node_exporter):
    # keep every CPU busy over the interval: cpu_busy must show it
    burners = [multiprocessing.Process(target=_burn, args=(3.0,)) for _ in range(proc_cpus())]
    for p in burners:
        p.start()
    try:
        time.sleep(0.3)
        r = tool("resources", node_exporter, "1500")
    finally:
        for p in burners:
            p.join(10)
    assert r.returncode == 0, r.stderr
    pair, avg = r.stdout.splitlines()
    assert pair.startswith("pair=1 "), pair
    f = figures(avg)
    assert f["samples"] == 1
    assert 0 <= f["cpu_busy"] <= 1 and 0 < f["mem_available"] < 1 and 0 <= f["io_busy"] <= 1, f
    assert f["cpu_busy"] > 0.5, f
    meminfo = proc_meminfo()
    assert abs(f["mem_available"] - meminfo["MemAvailable"] / meminfo["MemTotal"]) < 0.1, f


def test_pairs_average(node_exporter):
    r = tool("resources", node_exporter, "300", "3")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 4, lines
    pairs = [figures(line) for line in lines[:3]]
    avg = figures(lines[3])
    assert [p["pair"] for p in pairs] == [1, 2, 3]
    assert avg["samples"] == 3
    for key in ("cpu_busy", "mem_available", "io_busy"):
        for p in pairs:
            assert 0 <= p[key] <= 1, (key, p)
        assert abs(avg[key] - sum(p[key] for p in pairs) / 3) < 1e-5, (key, lines)


def test_dead_port(node_exporter):
    port = mchelpers.free_port(IP)
    url = f"http://{IP}:{port}/metrics"
    start = time.monotonic()
    r = tool("sample", url)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"metrics scrape of {url}: connection refused by {IP}:{port} "
                                "(is node_exporter running there?)")
    assert time.monotonic() - start < 5
    assert r.stdout == ""


def test_node_exporters_landing_page(node_exporter):
    url = node_exporter[:-len("metrics")]
    r = tool("sample", url)
    assert r.returncode == 1
    assert r.stderr.strip().startswith(f"metrics scrape of {url}: the answer is text/html"), \
        r.stderr
    assert r.stderr.strip().endswith("not metrics text (is the URL node_exporter's /metrics?)")


class _Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path == "/text":
            body, status, ctype = b"Hello, this is not metrics.\n", 200, "text/plain"
        elif self.path == "/other-metrics":
            body, status, ctype = b"# TYPE up gauge\nup 1\n", 200, "text/plain; version=0.0.4"
        else:
            body, status, ctype = b"404 page not found\n", 404, "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def page_server():
    server = http.server.ThreadingHTTPServer((IP, 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{IP}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_pages_that_are_not_node_exporters(page_server):
    url = page_server + "/text"
    r = tool("sample", url)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"metrics scrape of {url}: not a metrics page: line 1: "
                                "expected a blank and a value after the name: "
                                "'Hello, this is not metrics.'")

    url = page_server + "/other-metrics"
    r = tool("sample", url)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"metrics scrape of {url}: no node_cpu_seconds_total"
                                "{mode=\"idle\"} among its 1 series (is the URL node_exporter's "
                                "/metrics?)")

    url = page_server + "/nope"
    r = tool("sample", url)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"metrics scrape of {url}: HTTP 404 Not Found (the path is "
                                "usually /metrics)")


def test_silent_server_times_out():
    with socket.socket() as silent:
        silent.bind((IP, 0))
        silent.listen(4)
        url = f"http://{IP}:{silent.getsockname()[1]}/metrics"
        start = time.monotonic()
        r = tool("sample", url, timeout_ms=700)
        took = time.monotonic() - start
    assert r.returncode == 1
    assert r.stderr.strip() == (f"metrics scrape of {url}: timed out after 700 ms while waiting "
                                "for the answer")
    assert 0.6 < took < 3, took
