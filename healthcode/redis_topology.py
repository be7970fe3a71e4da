"""Turn ``REDIS_URL`` into a redis-py client for its topology, and describe what it reached.

The URL forms follow the `limits` library's convention (its ``storage_from_string`` schemes):

=====================================================================  ===========================
``redis://[user:password@]host:port[/db]``, ``rediss://``, ``unix://``  one server
``redis+cluster://[user:password@]host:port[,host:port...][?options]``  Redis Cluster, start-up
``rediss+cluster://...`` (TLS)                                          nodes (any of them will do)
``redis+sentinel://[user:password@]host:port[,host:port...]/<service    a primary managed by
name>[/db][?options]``                                                  Sentinel
=====================================================================  ===========================

User and password in a cluster or sentinel URL authenticate to the data nodes, and (as in
`limits`) to the sentinels too unless ``sentinel_password`` (and ``sentinel_username``) say
otherwise. Options are few on purpose, and an unknown one is refused: a typo must not silently
change behaviour. Replicas are never read from: a verify must see the latest status version.

Failover without a restart: the cluster client refreshes its slot table on ``MOVED`` and on
connection errors (every error, not only every fifth ``MOVED``); the Sentinel-managed pool asks
the sentinels for the primary on every new connection and drops connections to a primary that
was demoted (``READONLY``). A cluster that cannot be reached when the service starts does not
stop it: the client is built on first use, so verify keeps working from the token alone.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
from redis import exceptions as rx
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from .errors import ConfigurationError

SINGLE = "single"
CLUSTER = "cluster"
SENTINEL = "sentinel"

_SINGLE_SCHEMES = ("redis", "rediss", "unix")
_CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
_SENTINEL_SCHEMES = ("redis+sentinel",)

#: options each URL form accepts in its query string
_TLS_OPTIONS = frozenset({"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"})
_SENTINEL_OPTIONS = frozenset({"sentinel_username", "sentinel_password"})

SLOTS = 16384
#: retries of a cluster command after a connection error, MOVED refresh or CLUSTERDOWN
CLUSTER_RETRIES = 2


@dataclass(frozen=True)
class Topology:
    """What a ``REDIS_URL`` names, parsed; never printed with its password."""

    kind: str
    url: str = field(repr=False)
    nodes: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    options: dict = field(default_factory=dict, repr=False)

    @property
    def redacted(self) -> str:
        """The URL with any password replaced, for messages and logs."""
        if self.password is None:
            return self.url
        scheme, _, rest = self.url.partition("://")
        _, _, hosts = rest.rpartition("@")
        user = self.username or ""
        return f"{scheme}://{user}:***@{hosts}"


def _bad(url: str, problem: str) -> ConfigurationError:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:  # keep a password out of the message
        rest = "***@" + rest.rpartition("@")[2]
    return ConfigurationError(f"REDIS_URL={scheme}{sep}{rest}: {problem}")


def parse(url: str) -> Topology:
    """Parse and check a ``REDIS_URL``; :class:`ConfigurationError` naming the variable."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            "REDIS_URL must be a redis://, rediss://, unix://, redis+cluster://, "
            "rediss+cluster:// or redis+sentinel:// URL")
    scheme = url.partition("://")[0].lower()
    if scheme in _SINGLE_SCHEMES:
        try:
            redis.connection.parse_url(url)
        except ValueError as exc:
            raise _bad(url, str(exc)) from None
        path = urlsplit(url).path
        if scheme != "unix" and path not in ("", "/") and not path[1:].isdigit():
            raise _bad(url, f"database {path[1:]!r} is not a number")
        return Topology(SINGLE, url, tls=scheme == "rediss")
    if scheme not in _CLUSTER_SCHEMES + _SENTINEL_SCHEMES:
        raise _bad(url, "unknown scheme; use redis://, rediss://, unix://, redis+cluster://, "
                        "rediss+cluster:// or redis+sentinel://")
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes = tuple(_host_port(url, item) for item in hostlist.split(","))
    try:
        options = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)) \
            if parts.query else {}
    except ValueError:
        raise _bad(url, "the query string is not name=value pairs") from None
    tls = scheme.startswith("rediss")
    allowed = (_TLS_OPTIONS if tls else frozenset()) | (
        _SENTINEL_OPTIONS if scheme in _SENTINEL_SCHEMES else frozenset())
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise _bad(url, f"unknown option {unknown[0]!r}"
                        + (f"; known: {', '.join(sorted(allowed))}" if allowed else ""))
    if scheme in _CLUSTER_SCHEMES:
        if parts.path not in ("", "/"):
            raise _bad(url, "a cluster has no database number or service name in the path")
        return Topology(CLUSTER, url, nodes, username=username, password=password, tls=tls,
                        options=options)
    segments = [s for s in parts.path.split("/") if s]
    if not segments or len(segments) > 2:
        raise _bad(url, "the path must be /<service name> or /<service name>/<db>")
    db = 0
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise _bad(url, f"database {segments[1]!r} is not a number")
        db = int(segments[1])
    return Topology(SENTINEL, url, nodes, service=unquote(segments[0]), db=db,
                    username=username, password=password, options=options)


def _host_port(url: str, item: str) -> tuple[str, int]:
    host, colon, port = item.strip().rpartition(":")
    if not colon:
        host, port = item.strip(), ""
    host = host.strip("[]")
    if not host:
        raise _bad(url, f"start-up node {item!r} has no host")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad(url, f"start-up node {item!r} needs a port (host:port)")
    return host, int(port)


# -- clients -------------------------------------------------------------------------------------

def connect(topology: Topology | str, timeout: float = 0.5):
    """A client for the topology: ``decode_responses=True``, short timeouts, no replica reads."""
    if isinstance(topology, str):
        topology = parse(topology)
    common = {"socket_timeout": timeout, "socket_connect_timeout": timeout,
              "decode_responses": True}
    if topology.kind == SINGLE:
        return redis.Redis.from_url(topology.url, retry_on_timeout=False, **common)
    auth = {"username": topology.username, "password": topology.password}
    if topology.kind == CLUSTER:
        tls = {"ssl": True, **{k: v for k, v in topology.options.items()
                               if k in _TLS_OPTIONS}} if topology.tls else {}
        return LazyCluster(lambda: RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in topology.nodes],
            # refresh the whole slot table on every MOVED: after a failover every slot of the
            # dead primary moves at once, and patching one slot at a time costs a round trip
            # per slot
            reinitialize_steps=1,
            # a cluster missing a primary still serves the slots it has (deploy/redis-cluster.conf
            # sets cluster-require-full-coverage no to match)
            require_full_coverage=False,
            # fail fast while a slot has no primary: each retry after CLUSTERDOWN sleeps 0.25 s
            # and redis-py's default of 10 would hold a scan for ~3 s before the token-only
            # answer; two retries ride out a MOVED or a refreshed slot table
            retry=Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.2), CLUSTER_RETRIES),
            **auth, **tls, **common))
    sentinel_auth = {"username": topology.options.get("sentinel_username", topology.username),
                     "password": topology.options.get("sentinel_password", topology.password)}
    sentinel = Sentinel(list(topology.nodes),
                        sentinel_kwargs={**{k: v for k, v in sentinel_auth.items() if v},
                                         "socket_timeout": timeout,
                                         "socket_connect_timeout": timeout},
                        **common)
    return sentinel.master_for(topology.service, db=topology.db, **auth, **common)


class LazyCluster:
    """A RedisCluster client built on first use, so a service starts while its cluster is down
    (redis-py's constructor connects at once). Building fails as a ``ConnectionError``, which
    the store reports as unavailable, and is tried again on the next call."""

    def __init__(self, build):
        self._build = build
        self._client: RedisCluster | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> RedisCluster:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    try:
                        self._client = self._build()
                    except rx.RedisClusterException as exc:
                        raise rx.ConnectionError(f"no cluster node answers: {exc}") from exc
        return self._client

    def __getattr__(self, name):
        return getattr(self.client, name)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def kind_of(client) -> str:
    if isinstance(client, (LazyCluster, RedisCluster)):
        return CLUSTER
    if isinstance(getattr(client, "connection_pool", None), SentinelConnectionPool):
        return SENTINEL
    return SINGLE


def scan_iter(client, match: str, count: int = 500):
    """Every key matching ``match`` on every primary: a cluster scan visits each primary in
    turn (a plain SCAN would see one node's share of the keys only)."""
    if kind_of(client) == CLUSTER:
        cluster = client.client if isinstance(client, LazyCluster) else client
        return cluster.scan_iter(match, count=count, target_nodes=cluster.PRIMARIES)
    return client.scan_iter(match, count=count)


def describe(client) -> dict:
    """Which topology the client reached and how whole it is, for ``/readyz``.

    ``complete`` is true when every slot has a primary that answers (a cluster), or when the
    sentinels name a primary that answers (sentinel), or when the one server answers.
    """
    kind = kind_of(client)
    if kind == CLUSTER:
        return _describe_cluster(client.client if isinstance(client, LazyCluster) else client)
    if kind == SENTINEL:
        return _describe_sentinel(client)
    client.ping()
    role = client.info("replication")
    return {"topology": SINGLE, "complete": True, "primaries": 1,
            "replicas": int(role.get("connected_slaves", 0))}


def _describe_cluster(cluster: RedisCluster) -> dict:
    """CLUSTER INFO and CLUSTER NODES from the first known node that answers (during a
    failover some do not)."""
    last: Exception | None = None
    for node in cluster.get_nodes():
        try:
            connection = cluster.get_redis_connection(node)
            info = connection.execute_command("CLUSTER INFO")
            nodes = connection.execute_command("CLUSTER NODES")
            break
        except (rx.ConnectionError, rx.TimeoutError) as exc:
            last = exc
    else:
        raise rx.ConnectionError("no cluster node answers") from last
    primaries = replicas = 0
    for node in nodes.values():
        flags = node.get("flags", "")
        if "fail" in flags.replace("fail?", ""):  # "fail?" is one node's suspicion only
            continue
        if "master" in flags and node.get("slots"):
            primaries += 1
        elif "slave" in flags:
            replicas += 1
    state = str(info.get("cluster_state"))
    slots_ok = int(info.get("cluster_slots_ok", 0))
    return {"topology": CLUSTER, "complete": state == "ok" and slots_ok == SLOTS,
            "cluster_state": state,
            "slots_assigned": int(info.get("cluster_slots_assigned", 0)),
            "slots_ok": slots_ok, "primaries": primaries, "replicas": replicas}


def _describe_sentinel(client) -> dict:
    client.ping()
    pool: SentinelConnectionPool = client.connection_pool
    sentinel, service = pool.sentinel_manager, pool.service_name
    replicas = sentinel.discover_slaves(service)
    return {"topology": SENTINEL, "complete": True, "service": service, "primaries": 1,
            "replicas": len(replicas)}
