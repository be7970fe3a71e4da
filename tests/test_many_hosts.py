"""Many hosts, one Redis and one shared data directory (README "Many hosts").

A host on a shared Redis never makes up a secret of its own: it refuses to start instead, since
its subject ids or CSRF tokens would differ from the other hosts'. Two real ``healthcode serve``
processes over one data directory and the session's Redis (single, cluster or sentinel) agree on
codes, residents and key rotations.
"""
import base64
import json
import os
import subprocess
import sys
import time

import pytest
import requests

from healthcode import create_app
from healthcode.errors import ConfigurationError
from healthcode.keys import KeyRing
from tests.conftest import RESIDENT
from tests.support import free_port
from tests.test_serving import stop, wait_ready

#: a key rotation reaches every worker of every host within this (KeyRing reload interval)
ROTATION_SECONDS = 2.0


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("configured, missing", [
    ({"SECRET_KEY": "k" * 20}, "HEALTHCODE_SUBJECT_SECRET"),
    ({"SUBJECT_SECRET": "s" * 20}, "HEALTHCODE_SECRET_KEY"),
])
def test_a_host_on_a_shared_redis_refuses_to_invent_a_secret(tmp_path, redis_server,
                                                             configured, missing):
    with pytest.raises(ConfigurationError) as info:
        create_app({"REDIS_URL": redis_server.url, "DATA_DIR": str(tmp_path), **configured})
    assert missing in info.value.message and "healthcode init" in info.value.message
    assert not (tmp_path / "subject.secret").exists()
    assert not (tmp_path / "session.secret").exists()


def test_an_uninitialised_directory_that_cannot_be_written_stops_start_up(tmp_path,
                                                                         redis_server):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")  # as root a chmod would not stop writes; a file in the path does
    with pytest.raises(ConfigurationError) as info:
        create_app({"REDIS_URL": redis_server.url, "DATA_DIR": str(blocker / "data"),
                    "SUBJECT_SECRET": "s" * 20, "SECRET_KEY": "k" * 20})
    assert "healthcode init" in info.value.message


def test_healthcode_serve_on_a_shared_redis_without_secrets_exits_saying_why(tmp_path,
                                                                          redis_server):
    from click.testing import CliRunner

    from healthcode.cli import main

    env = {"HEALTHCODE_DATA_DIR": str(tmp_path), "REDIS_URL": redis_server.url,
           "HEALTHCODE_SUBJECT_SECRET": "", "HEALTHCODE_SECRET_KEY": ""}
    for command in (["serve"], ["tokens", "list"]):
        result = CliRunner().invoke(main, command, env=env)
        assert result.exit_code == 1, result.output
        assert "HEALTHCODE_SUBJECT_SECRET" in result.output and "healthcode init" in \
            result.output
    assert not (tmp_path / "subject.secret").exists()


def test_healthcode_init_prepares_the_shared_directory_once(tmp_path, redis_server):
    from click.testing import CliRunner

    from healthcode.cli import main

    env = {"HEALTHCODE_DATA_DIR": str(tmp_path), "REDIS_URL": redis_server.url}
    first = CliRunner().invoke(main, ["init"], env=env, catch_exceptions=False)
    assert first.exit_code == 0
    assert "subject.secret" in first.output and "session.secret" in first.output
    secrets = {n: (tmp_path / n).read_text() for n in ("subject.secret", "session.secret")}
    again = CliRunner().invoke(main, ["init"], env=env, catch_exceptions=False)
    assert again.exit_code == 0 and "created" not in again.output  # kept, not replaced
    assert {n: (tmp_path / n).read_text() for n in secrets} == secrets
    create_app({"REDIS_URL": redis_server.url, "DATA_DIR": str(tmp_path)})  # now it starts


def _kid(token: str) -> str:
    header = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


def test_two_hosts_over_one_data_dir_and_one_redis_agree(tmp_path, redis_server,
                                                         redis_client):
    data = tmp_path / "shared"
    env = {**os.environ, "REDIS_URL": redis_server.url, "HEALTHCODE_DATA_DIR": str(data),
           "HEALTHCODE_ISSUER": "HC-HOSTS"}
    env.pop("HEALTHCODE_SUBJECT_SECRET", None)
    env.pop("HEALTHCODE_SECRET_KEY", None)
    cli = [sys.executable, "-m", "healthcode.cli"]
    subprocess.run([*cli, "init"], env=env, check=True, capture_output=True)
    before = _files(data)
    ports = [free_port(), free_port()]
    hosts = [subprocess.Popen([*cli, "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for port in ports]
    a, b = (f"http://127.0.0.1:{port}" for port in ports)
    try:
        for url, proc in zip((a, b), hosts):
            wait_ready(f"{url}/readyz", proc)

        def token(role):
            made = subprocess.run([*cli, "tokens", "create", "--role", role], env=env,
                                  check=True, capture_output=True, text=True)
            return {"Authorization": f"Bearer {made.stdout.strip().splitlines()[-1]}"}

        authority, checkpoint = token("authority"), token("checkpoint")
        # a resident enrolled through A is seen by B, and A's code verifies at B
        sid = requests.post(f"{a}/api/v1/residents", json=RESIDENT,
                            headers=authority).json()["id"]
        shown = requests.get(f"{b}/api/v1/residents/{sid}", headers=authority)
        assert shown.status_code == 200 and shown.json()["status"] == "green"
        code = requests.get(f"{a}/api/v1/residents/{sid}/code", headers=authority).json()["code"]
        verified = requests.post(f"{b}/api/v1/verify", json={"code": code},
                                 headers=checkpoint).json()
        assert verified["valid"] is True and verified["checked_online"] is True
        # a status change through B supersedes A's code everywhere
        requests.put(f"{b}/api/v1/residents/{sid}/status", headers=authority,
                     json={"status": "red", "reason": "close_contact"}).raise_for_status()
        assert requests.post(f"{a}/api/v1/verify", json={"code": code},
                             headers=checkpoint).json()["reason"] == "superseded"
        assert _files(data) == before, "a host wrote to the shared data directory"

        kept_sid = requests.post(f"{a}/api/v1/residents", headers=authority, json={
            **RESIDENT, "document": {"type": "passport", "number": "K1", "region": "HK"}},
        ).json()["id"]
        kept = requests.get(f"{a}/api/v1/residents/{kept_sid}/code",
                            headers=authority).json()["code"]

        # keys rotated in one place reach both hosts within the documented time
        old_kid = requests.get(f"{a}/readyz").json()["keys"]["active"]
        rotated = subprocess.run([*cli, "keys", "rotate"], env=env, check=True,
                                 capture_output=True, text=True)
        new_kid = rotated.stdout.strip().splitlines()[-1]
        assert new_kid != old_kid and new_kid == KeyRing(data / "keys").active.kid
        rotated_at = time.monotonic()
        for url in (a, b):
            while requests.get(f"{url}/readyz").json()["keys"]["active"] != new_kid:
                assert time.monotonic() - rotated_at < ROTATION_SECONDS + 1.0, url
                time.sleep(0.1)
        for n, (signer, checker) in enumerate(((a, b), (b, a))):
            body = {**RESIDENT, "document": {"type": "passport", "number": f"R{n}",
                                             "region": "HK"}}
            new_sid = requests.post(f"{signer}/api/v1/residents", json=body,
                                    headers=authority).json()["id"]
            fresh = requests.get(f"{signer}/api/v1/residents/{new_sid}/code",
                                 headers=authority).json()["code"]
            assert _kid(fresh) == new_kid
            assert requests.post(f"{checker}/api/v1/verify", json={"code": fresh},
                                 headers=checkpoint).json()["valid"] is True
        # a code signed before the rotation keeps verifying on both until the old key retires
        assert _kid(kept) == old_kid
        for url in (a, b):
            assert requests.post(f"{url}/api/v1/verify", json={"code": kept},
                                 headers=checkpoint).json()["valid"] is True
    finally:
        for proc in hosts:
            stop(proc)
