"""netcut - cut and heal real TCP traffic between two sets of loopback addresses with nftables.

A ``NetCut`` owns one nftables table, ``inet mailcluster_cut_<pid>[_<n>]``, with one chain on
the ``output`` hook.  Loopback packets do pass that hook (measured: a connect from 127.0.5.12
to 127.0.5.11:7777 times out while the table is there and succeeds at once after it is
deleted), so a rule there cuts traffic between processes of this very host.  ``cut()`` creates
the table, ``heal()`` deletes it; ``close()`` (also run at interpreter exit, and by ``with``)
deletes it too.  Only this object's own table is ever touched: nothing is flushed, no other
table is read or changed.

What is dropped, with sources="pair" (the default): TCP packets between side A and side B, in
both directions, whose source or destination port is one of ``ports`` (all TCP between the
two sides when ports is empty):

    ip saddr A ip daddr B tcp dport P   (A's connections to B's listener)
    ip saddr A ip daddr B tcp sport P   (A's listener answering B)
    ... and the same with A and B swapped.

That depends on the source address a process uses, and on loopback it is often not the one it
listens on: a process that connects to 127.0.5.11 without binding gets source 127.0.0.1
(measured).  Cassandra 5.0's internode connections are such: ``ss -tnp`` shows node 1
connected from 127.0.0.1:N to 127.0.5.12:7000 and node 2 from 127.0.0.1:M to 127.0.5.11:7000,
so a pair rule would cut nothing.  sources="any" matches the listening end only, whoever
connects:

    ip daddr A tcp dport P   and   ip saddr A tcp sport P   (and the same for B)

i.e. every connection to A's or B's ports P is cut.  For Cassandra's storage port between the
two node addresses, the only such connections are the nodes' own (gossip, mutations, hints,
Paxos): clients (daemons, the CLI, the tests' CQL) still reach either node on its CQL port.

mode "drop" (default) blackholes the packets, as a broken WAN link does: established
connections hang until the peer's failure detector gives up, new connections time out.
mode "reject" answers with a TCP reset instead (``reject with tcp reset``): faster to notice,
less like a real cut.

Needs root and the nft command (Debian package nftables: scripts/deps.sh).
"""

from __future__ import annotations

import atexit
import ipaddress
import json
import os
import shutil
import subprocess
import threading
import time
from typing import Iterable, Optional

TABLE_PREFIX = "mailcluster_cut_"
NFT_TIMEOUT = 10  # seconds for one nft command

_lock = threading.Lock()
_seq = 0


class NetCutError(RuntimeError):
    pass


def nft_available() -> Optional[str]:
    """None if nft can be used here, else why not."""
    if shutil.which("nft") is None:
        return "the nft command is missing (Debian package nftables; run scripts/deps.sh)"
    if os.geteuid() != 0:
        return "nft needs root"
    r = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                       timeout=NFT_TIMEOUT)
    if r.returncode != 0:
        return f"nft list tables failed: {r.stderr.strip()}"
    return None


def stale_tables() -> list[str]:
    """Tables named like ours whose process is gone (a test killed before it could heal):
    they still drop traffic.  Listed, never deleted here: delete one by hand with
    ``nft delete table inet NAME``."""
    r = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                       timeout=NFT_TIMEOUT)
    stale = []
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "table" and parts[2].startswith(TABLE_PREFIX):
            pid = parts[2][len(TABLE_PREFIX):].split("_")[0]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                stale.append(f"{parts[1]} {parts[2]}")
    return stale


def _addresses(side: Iterable[str], what: str) -> list[str]:
    out = []
    for a in side:
        ip = ipaddress.ip_address(a)
        if ip.version != 4:
            raise ValueError(f"{what}: {a} is not an IPv4 address (only IPv4 is supported)")
        out.append(str(ip))
    if not out:
        raise ValueError(f"{what}: no address")
    return out


class NetCut:
    """Cut and heal TCP traffic between side_a and side_b (IPv4 addresses) on ports."""

    def __init__(self, side_a: Iterable[str], side_b: Iterable[str],
                 ports: Iterable[int] = (), mode: str = "drop", sources: str = "pair"):
        global _seq
        if mode not in ("drop", "reject"):
            raise ValueError(f"mode {mode!r}: expected drop or reject")
        if sources not in ("pair", "any"):
            raise ValueError(f"sources {sources!r}: expected pair or any")
        if sources == "any" and not ports:
            raise ValueError('sources="any" needs ports (it cuts every connection to them)')
        self.sources = sources
        self.side_a = _addresses(side_a, "side_a")
        self.side_b = _addresses(side_b, "side_b")
        if set(self.side_a) & set(self.side_b):
            raise ValueError(f"an address on both sides: {set(self.side_a) & set(self.side_b)}")
        self.ports = sorted({int(p) for p in ports})
        self.mode = mode
        with _lock:
            _seq += 1
            n = _seq
        self.table = f"{TABLE_PREFIX}{os.getpid()}" + (f"_{n}" if n > 1 else "")
        self.is_cut = False
        self.history: list[tuple[str, float]] = []  # ("cut"|"heal", time.monotonic())
        atexit.register(self.close)

    # ---- nft
    @staticmethod
    def _nft(*args: str, script: Optional[str] = None) -> subprocess.CompletedProcess:
        cmd = ["nft"] + (["-f", "-"] if script is not None else list(args))
        r = subprocess.run(cmd, input=script, capture_output=True, text=True,
                           timeout=NFT_TIMEOUT)
        return r

    def ruleset(self) -> str:
        """The table cut() loads (nft -f syntax)."""
        verdict = "reject with tcp reset" if self.mode == "reject" else "drop"
        a = "{ " + ", ".join(self.side_a) + " }"
        b = "{ " + ", ".join(self.side_b) + " }"
        port_set = "{ " + ", ".join(str(p) for p in self.ports) + " }" if self.ports else None
        rules = []
        if self.sources == "any":
            for side in (a, b):
                rules.append(f"ip daddr {side} tcp dport {port_set} counter {verdict}")
                rules.append(f"ip saddr {side} tcp sport {port_set} counter {verdict}")
        for src, dst in ((a, b), (b, a)) if self.sources == "pair" else ():
            if port_set is None:
                rules.append(f"ip saddr {src} ip daddr {dst} meta l4proto tcp counter {verdict}")
            else:
                rules.append(f"ip saddr {src} ip daddr {dst} tcp dport {port_set} counter "
                             f"{verdict}")
                rules.append(f"ip saddr {dst} ip daddr {src} tcp sport {port_set} counter "
                             f"{verdict}")
        body = "\n".join(f"    {r}" for r in rules)
        return (f"table inet {self.table} {{\n"
                f"  chain cut {{\n"
                f"    type filter hook output priority filter; policy accept;\n"
                f"{body}\n"
                f"  }}\n"
                f"}}\n")

    def table_exists(self) -> bool:
        return self._nft("list", "table", "inet", self.table).returncode == 0

    # ---- the cut
    def cut(self) -> None:
        """Start dropping (idempotent)."""
        if self.is_cut:
            return
        if self.table_exists():  # left by this process, e.g. a cut() interrupted half way
            self._delete()
        r = self._nft(script=self.ruleset())
        if r.returncode != 0:
            raise NetCutError(f"nft could not load table inet {self.table}: "
                              f"{r.stderr.strip()}\n{self.ruleset()}")
        self.is_cut = True
        self.history.append(("cut", time.monotonic()))

    def heal(self) -> None:
        """Stop dropping: delete our table (idempotent)."""
        if not self.is_cut and not self.table_exists():
            return
        self._delete()
        self.is_cut = False
        self.history.append(("heal", time.monotonic()))

    def _delete(self) -> None:
        r = self._nft("delete", "table", "inet", self.table)
        if r.returncode != 0 and self.table_exists():
            raise NetCutError(f"nft could not delete table inet {self.table}: "
                              f"{r.stderr.strip()}")

    def close(self) -> None:
        """heal(), and forget the exit hook."""
        try:
            self.heal()
        finally:
            atexit.unregister(self.close)

    def __enter__(self) -> "NetCut":
        self.cut()
        return self

    def __exit__(self, *exc) -> None:
        self.heal()

    # ---- what it did
    def dropped(self) -> int:
        """Packets our rules have dropped (or rejected) since the table was loaded; 0 when
        healed."""
        r = self._nft("-j", "list", "table", "inet", self.table)
        if r.returncode != 0:
            return 0
        total = 0
        for item in json.loads(r.stdout).get("nftables", []):
            rule = item.get("rule")
            if not rule:
                continue
            for expr in rule.get("expr", []):
                if "counter" in expr:
                    total += int(expr["counter"]["packets"])
        return total

    def __repr__(self) -> str:
        return (f"NetCut({self.side_a} <-/-> {self.side_b}, ports {self.ports or 'all'}, "
                f"{self.mode}, sources {self.sources}, table inet {self.table}, {'cut' if self.is_cut else 'healed'})")


def tcp_connections(addresses: Iterable[str], port: int) -> list[tuple[str, str]]:
    """Established TCP connections (local, peer) between any two of addresses where one
    end is port, as ss shows them: to verify which source addresses a service uses."""
    addrs = set(addresses)
    out = subprocess.run(["ss", "-tnH", "state", "established"], capture_output=True, text=True,
                         timeout=NFT_TIMEOUT).stdout
    conns = []
    for line in out.splitlines():
        f = line.split()
        if len(f) < 4:
            continue
        local, peer = f[-2], f[-1]
        lip, lport = local.rsplit(":", 1)
        pip, pport = peer.rsplit(":", 1)
        if lip in addrs and pip in addrs and str(port) in (lport, pport):
            conns.append((local, peer))
    return conns
