"""A local Redis Cluster for the tests: 3 masters and 3 replicas on loopback.

Real ``redis-server --cluster-enabled yes`` processes, each with AOF and ``appendfsync
always``, in a temporary directory, joined with ``redis-cli --cluster create``.  Every
process is this module's own, stopped by its pid: other servers on the machine (the
system one, CI's) are never touched.  Missing ``redis-server``/``redis-cli`` skips on a
developer's machine and fails with ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.1"
#: How long a master may be unreachable before its replica takes over (ms): small, so a
#: failover test sees the promotion within a few seconds.
NODE_TIMEOUT_MS = 1500


def require_cluster_tools() -> None:
    """Skip (laptop) or fail (CI) without redis-server and a redis-cli with --cluster."""
    # Imported here: benchmarks import this module beside a servers module of their own.
    from servers import IN_CI

    missing = [tool for tool in ("redis-server", "redis-cli") if shutil.which(tool) is None]
    if missing:
        message = f"the Redis Cluster tests need {' and '.join(missing)}"
        if IN_CI:
            pytest.fail(f"{message}: .ci/run installs the Redis server package")
        pytest.skip(f"{message} (apt install redis-server)")


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (all held open until all are found)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind((HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


class Node:
    """One redis-server of the cluster."""

    def __init__(
        self,
        directory: Path,
        port: int,
        bus_port: int,
        password: str | None = None,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        self.dir = directory
        self.port = port
        self.bus_port = bus_port
        self.password = password
        self.tls = tls  # (CA, certificate, key): TLS for clients, the bus and replication
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = ["redis-server", "--bind", HOST]
        if self.tls:
            ca, cert, key = self.tls
            argv += ["--port", "0", "--tls-port", str(self.port), "--tls-cluster", "yes"]
            argv += ["--tls-replication", "yes", "--tls-auth-clients", "no"]
            argv += ["--tls-cert-file", str(cert), "--tls-key-file", str(key)]
            argv += ["--tls-ca-cert-file", str(ca)]
        else:
            argv += ["--port", str(self.port)]
        argv += ["--cluster-enabled", "yes", "--cluster-port", str(self.bus_port)]
        argv += ["--cluster-config-file", "nodes.conf"]
        argv += ["--cluster-node-timeout", str(NODE_TIMEOUT_MS)]
        argv += ["--dir", str(self.dir), "--save", "", "--appendonly", "yes"]
        argv += ["--appendfsync", "always", "--protected-mode", "no"]
        argv += ["--logfile", str(self.dir / "redis.log")]
        if self.password:
            argv += ["--requirepass", self.password, "--masterauth", self.password]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def wait_listening(self, deadline: float) -> None:
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return
            except OSError:
                if self.proc is None or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server {self.address} exited") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server {self.address} did not start") from None
                time.sleep(0.05)

    def client(self) -> Any:
        """A plain redis-py client of this one node (the caller closes it)."""
        import redis

        tls = {"ssl": True, "ssl_ca_certs": str(self.tls[0])} if self.tls else {}
        return redis.Redis(
            host=HOST, port=self.port, socket_timeout=10, password=self.password, **tls
        )

    @property
    def id(self) -> str:
        return self.cli("cluster", "myid").strip()

    def cli(self, *args: str, timeout: float = 10) -> str:
        """``redis-cli -p <port> args...`` against this node; its output."""
        argv = ["redis-cli", "-h", HOST, "-p", str(self.port), *self.auth, *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True)
        return done.stdout

    @property
    def auth(self) -> list[str]:
        """redis-cli's password and TLS arguments."""
        args = ["-a", self.password, "--no-auth-warning"] if self.password else []
        return args + (["--tls", "--cacert", str(self.tls[0])] if self.tls else [])

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown work at all (the AOF has what was fsynced)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)  # in case a test left it stopped
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class LocalCluster:
    """Six nodes, three masters with a replica each, all slots covered."""

    def __init__(
        self,
        directory: Path,
        masters: int = 3,
        replicas: int = 1,
        password: str | None = None,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        ports = free_ports(2 * masters * (1 + replicas))
        self.nodes = [
            Node(directory / f"node{i}", ports[2 * i], ports[2 * i + 1], password, tls)
            for i in range(masters * (1 + replicas))
        ]
        self.replicas = replicas
        self.master_count = masters
        self.directory = directory
        self.password, self.tls = password, tls

    @property
    def seeds(self) -> str:
        """Every node, as the URL's comma-separated host list."""
        return ",".join(node.address for node in self.nodes)

    def url(self, prefix: str = "", scheme: str = "redis+cluster", **options: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"prefix": prefix, **options}.items() if v)
        return f"{scheme}://{self.seeds}/" + (f"?{query}" if query else "")

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        deadline = time.monotonic() + 30
        for node in self.nodes:
            node.wait_listening(deadline)
        argv = ["redis-cli", "--cluster", "create", *(n.address for n in self.nodes)]
        argv += ["--cluster-replicas", str(self.replicas), "--cluster-yes", *self.nodes[0].auth]
        subprocess.run(argv, capture_output=True, check=True, timeout=60)
        self.wait_ok()

    def whole(self) -> bool:
        """Every live node says ``cluster_state:ok``, every live node is in sync with
        the others' view, and every replica's link to its master is up (so a write can
        be confirmed by ``WAIT 1``)."""
        live = [n for n in self.nodes if n.alive]
        for node in live:
            if "cluster_state:ok" not in node.cli("cluster", "info"):
                return False
        masters = 0
        for node in live:
            replication = node.cli("info", "replication")
            if "role:master" in replication:
                masters += 1
            elif "master_link_status:up" not in replication:
                return False
        return masters == self.master_count

    def wait_ok(self, timeout: float = 60) -> float:
        """Wait until the cluster is :meth:`whole`; the seconds it took."""
        started = time.monotonic()
        while not self.whole():
            if time.monotonic() - started > timeout:
                raise RuntimeError("the cluster did not become whole (cluster_state:ok)")
            time.sleep(0.05)
        return time.monotonic() - started

    def add_master(self) -> Node:
        """Start one more node and have it join the cluster as a master without slots
        (``CLUSTER MEET``, as ``redis-cli --cluster add-node`` does); wait until every
        node knows it and the cluster is whole."""
        port, bus_port = free_ports(2)
        node = Node(
            self.directory / f"node{len(self.nodes)}", port, bus_port, self.password, self.tls
        )
        node.start()
        node.wait_listening(time.monotonic() + 30)
        self.nodes[0].cli("cluster", "meet", HOST, str(port), str(bus_port))
        self.nodes.append(node)
        self.master_count += 1
        deadline = time.monotonic() + 30
        while any(
            f"cluster_known_nodes:{len(self.nodes)}" not in n.cli("cluster", "info")
            for n in self.nodes
            if n.alive
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.address} did not join the cluster")
            time.sleep(0.05)
        self.wait_ok()  # a new master says cluster_state:ok only a moment later
        return node

    def node(self, port: int) -> Node:
        return next(node for node in self.nodes if node.port == port)

    def master_of_slot(self, slot: int) -> Node:
        """The live node that serves ``slot`` now, by a live node's ``CLUSTER SLOTS``."""
        import redis

        for node in self.nodes:
            if not node.alive:
                continue
            client = redis.Redis(host=HOST, port=node.port, socket_timeout=5)
            try:
                for low, high, master, *_ in client.execute_command("CLUSTER SLOTS"):
                    if low <= slot <= high:
                        return self.node(int(master[1]))
            finally:
                client.close()
        raise LookupError(f"no live node serves slot {slot}")

    def replica_of(self, master: Node) -> Node:
        """The live replica of ``master``."""
        master_id = master.id
        for line in master.cli("cluster", "nodes").splitlines():
            fields = line.split()
            if "slave" in fields[2] and fields[3] == master_id and "fail" not in fields[2]:
                return self.node(int(fields[1].split("@")[0].rpartition(":")[2]))
        raise LookupError(f"{master.address} has no replica")

    def masters(self) -> list[Node]:
        """The live masters that serve slots."""
        return [n for n in self.nodes if n.alive and "role:master" in n.cli("info", "replication")]

    def migrate_slot(self, slot: int, target: Node) -> None:
        """Move ``slot`` to ``target`` as ``redis-cli --cluster reshard`` does: mark it
        importing/migrating, MIGRATE its keys a few at a time (clients meanwhile get ASK
        for keys already gone, TRYAGAIN for commands spanning both nodes), then give it
        to ``target`` on every master (clients with the old map then get MOVED)."""
        source = self.master_of_slot(slot)
        if source is target:
            return
        src, dst = source.client(), target.client()
        try:
            dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source.id)
            src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target.id)
            while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 10):
                src.execute_command("MIGRATE", HOST, target.port, "", 0, 5000, "KEYS", *keys)
                time.sleep(0.01)  # let clients meet the half-moved slot
            for master in self.masters():
                client = master.client()
                try:
                    client.execute_command("CLUSTER SETSLOT", slot, "NODE", target.id)
                finally:
                    client.close()
        finally:
            src.close()
            dst.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


def prefix_for(tmp_path: Path) -> str:
    """A key prefix of one test's own (its temporary directory's name)."""
    name = re.sub(r"\W", "_", tmp_path.name).lower()[:40]
    return f"t:{name}_{zlib.crc32(str(tmp_path).encode()):08x}:"


def slot_of(prefix: str, namespace: str) -> int:
    """The hash slot of ``namespace``'s keys under ``prefix``."""
    from redis.cluster import key_slot

    return int(key_slot(f"{prefix}{{{namespace}}}:i".encode()))


@contextlib.contextmanager
def local_cluster(
    directory: Path, password: str | None = None, tls: tuple[Path, Path, Path] | None = None
) -> Iterator[LocalCluster]:
    """A started :class:`LocalCluster`, stopped (by pid) at the end."""
    require_cluster_tools()
    cluster = LocalCluster(directory, password=password, tls=tls)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
