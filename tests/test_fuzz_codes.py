"""Mutated codes of every scheme fail only with a code reason, never with another exception:
the CI-sized share of bench/fuzz.py (same mutations), run by hypothesis under the bounded,
derandomized ``ci`` profile (tests/conftest.py)."""
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz import SCHEMES, World
from healthcode.errors import CodeError
from tests.support import conformance_dir


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return World(tmp_path_factory.mktemp("fuzz"))


@pytest.mark.parametrize("scheme", SCHEMES)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
          deadline=None)
@given(seed=st.integers(0, 2**64 - 1))
def test_a_mutated_code_fails_only_with_a_code_reason(world, scheme, seed):
    if not world.seeds[scheme]:
        conformance_dir("icao")  # the ICAO seals are real ones: skip (fail under CI) without
    text = world.mutate(scheme, random.Random(seed))
    adapter = world.registry.detect(text)
    if adapter is None:
        return
    try:
        adapter.decode(text, trust=world.trust)
    except CodeError:
        pass


def test_the_mutations_reach_past_the_signature(world):
    """A harness whose inputs all fail at the first check would test nothing: some
    re-signed inputs verify, and others fail on their claims, after the signature."""
    rng = random.Random(3)
    outcomes = set()
    for _ in range(300):
        text = world.resigned("native", world.seeds["native"][0], rng)
        try:
            world.registry.get("native").decode(text, trust=world.trust)
            outcomes.add("valid")
        except CodeError as error:
            outcomes.add(error.reason)
    assert "valid" in outcomes and "malformed" in outcomes
    assert "bad_signature" not in outcomes
