"""HAProxy PROXY protocol on a listener (haproxy = yes): the address the header carries is the
client address the daemon logs and forwards to the backend; peers outside
haproxy_trusted_networks, and bad headers, are refused."""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
import time

from mchelpers import free_port, port_accepts, wait_for


def _v2_header(src: str, sport: int, dst: str, dport: int) -> bytes:
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return sig + bytes([0x21, 0x11]) + struct.pack("!H", len(addrs)) + addrs


def _connect(port: int, source_ip: str = "127.0.0.1") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source_ip, 0))
    return s


def _refused(s: socket.socket) -> bool:
    """The daemon closed the connection without a word (a close with our unread bytes still
    queued arrives as a reset)."""
    s.settimeout(10)
    try:
        return s.recv(100) == b""
    except ConnectionResetError:
        return True


def _read_line(s: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = s.recv(1)
        if not chunk:
            break
        buf += chunk
    return buf


def _login_lines(s: socket.socket, user: str) -> list[bytes]:
    assert _read_line(s).startswith(b"* OK"), "greeting after the PROXY header"
    s.sendall(f"a LOGIN {user} password\r\n".encode())
    lines = []
    while True:
        line = _read_line(s)
        assert line, "connection closed during login"
        lines.append(line)
        if line.startswith(b"a "):
            return lines


def _backend_line(fleet, user: str, rip: str):
    pattern = re.compile(rf"imap-login: Info: Login: user=<{user}>, method=PLAIN, "
                         rf"rip={re.escape(rip)},")
    for b in fleet.backends:
        if pattern.search(b.log_text()):
            return b.name
    return None


def test_proxy_v2_from_trusted_peer_sets_the_client_address(cluster, fleet):
    d = cluster(haproxy=("imap",), haproxy_trusted_networks="127.0.0.1/32", plaintext_auth="always")
    s = _connect(d.imap_port)
    try:
        s.sendall(_v2_header("192.0.2.33", 40123, "198.51.100.7", 143))
        assert _login_lines(s, "user141")[-1].startswith(b"a OK")
    finally:
        s.close()
    assert wait_for(lambda: _backend_line(fleet, "user141", "192.0.2.33"), 10,
                    message="the backend logged rip=192.0.2.33")
    assert re.search(r"event=login result=ok protocol=imap user=user141 .*client=192\.0\.2\.33:40123",
                     d.log_text())


def test_proxy_v1_from_trusted_peer_sets_the_client_address(cluster, fleet):
    d = cluster(haproxy=("imap",), haproxy_trusted_networks="127.0.0.0/8", plaintext_auth="always")
    s = _connect(d.imap_port)
    try:
        s.sendall(b"PROXY TCP4 203.0.113.9 198.51.100.7 51000 143\r\n")
        assert _login_lines(s, "user142")[-1].startswith(b"a OK")
    finally:
        s.close()
    assert wait_for(lambda: _backend_line(fleet, "user142", "203.0.113.9"), 10,
                    message="the backend logged rip=203.0.113.9")


def test_proxy_header_from_untrusted_peer_is_refused(cluster, fleet):
    d = cluster(haproxy=("imap",), haproxy_trusted_networks="127.0.0.1/32", plaintext_auth="always")
    s = _connect(d.imap_port, source_ip="127.0.0.99")
    try:
        s.sendall(_v2_header("192.0.2.34", 40124, "198.51.100.7", 143))
        assert _refused(s), "an untrusted peer must get nothing but a close"
    finally:
        s.close()
    wait_for(lambda: "event=haproxy_refused" in d.log_text(), 5, message="refusal logged")
    assert "peer is not in haproxy_trusted_networks" in d.log_text()
    assert "user=" not in d.log_text().split("event=haproxy_refused")[1].split("\n")[0]
    assert d.metrics().get('mailcluster_haproxy_refused_total', 0) >= 1


def test_missing_or_bad_proxy_header_is_refused(cluster):
    d = cluster(haproxy=("imap",), haproxy_trusted_networks="127.0.0.0/8", plaintext_auth="always", haproxy_timeout="1s")
    # a client that speaks IMAP at once, without a header
    s = _connect(d.imap_port)
    try:
        s.sendall(b"a LOGIN user143 password\r\n")
        assert _refused(s)
    finally:
        s.close()
    # a header that never completes
    s = _connect(d.imap_port)
    try:
        s.sendall(b"PROXY TCP4 203.0.113.9")
        assert _refused(s)
    finally:
        s.close()
    wait_for(lambda: "no complete PROXY header within haproxy_timeout" in d.log_text(), 5,
             message="timeout logged")
    assert "bad PROXY header" in d.log_text()
    # and the listener still serves a good one
    s = _connect(d.imap_port)
    try:
        s.sendall(b"PROXY TCP4 203.0.113.10 198.51.100.7 51001 143\r\n")
        assert _login_lines(s, "user143")[-1].startswith(b"a OK")
    finally:
        s.close()


def test_real_haproxy_in_front_with_send_proxy_v2(cluster, fleet, tmp_path):
    """Debian's haproxy as the load balancer, sending PROXY v2 to the daemon: the backend logs
    the address the client connected to haproxy from."""
    d = cluster(haproxy=("imap",), haproxy_trusted_networks="127.0.0.1/32", plaintext_auth="always")
    lb_port = free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(f"""
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend imap
    bind 127.0.0.1:{lb_port}
    default_backend mailcluster
backend mailcluster
    server mc 127.0.0.1:{d.imap_port} send-proxy-v2 source 127.0.0.1
""")
    proc = subprocess.Popen(["haproxy", "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        wait_for(lambda: port_accepts("127.0.0.1", lb_port), 10, message="haproxy listening")
        s = _connect(lb_port, source_ip="127.0.0.88")
        try:
            assert _login_lines(s, "user144")[-1].startswith(b"a OK")
        finally:
            s.close()
        assert wait_for(lambda: _backend_line(fleet, "user144", "127.0.0.88"), 10,
                        message="the backend logged rip=127.0.0.88 (haproxy's client)")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
