"""The scanner under a checkpoint mode, in Chromium: the page names the active mode and, on a
refusal, the rule that said no, in the page's language."""
from datetime import datetime, timedelta, timezone

import pytest

from healthcode import create_app
from tests.browser.conftest import LiveSite, screenshot, sign_in_with_token
from tests.rules.helpers import TEST_RECENT, eu_rule, write_rules

pytestmark = pytest.mark.browser


@pytest.fixture
def mode_site(tmp_path, redis_server):
    data = tmp_path / "data"
    write_rules(data / "rules", eu_rule(
        3, TEST_RECENT, certificate_type="Test", en="The test was taken at most 72 hours ago",
        pt="O teste foi feito há no máximo 72 horas"))
    (data / "modes").mkdir()
    (data / "modes" / "entry-at.toml").write_text(
        'description = "Entry into Austria"\ncountry = "AT"\n'
        '[descriptions]\npt = "Entrada na Áustria"\n')
    app = create_app({"TESTING": True, "REDIS_URL": redis_server.url, "DATA_DIR": str(data),
                      "ISSUER": "HC-TEST", "SUBJECT_SECRET": "browser-subject-secret-0123456789",
                      "SECRET_KEY": "test-session-secret-0123456789",
                      "CREDENTIAL_CACHE_SECONDS": 0})
    site = LiveSite(app)
    yield site
    site.close()


def code_tested(site, hours_ago: float) -> str:
    body = {"name": "陳大文", "status": "green",
            "document": {"type": "travel_permit", "number": f"H{int(hours_ago):07d}",
                         "region": "MO"},
            "evidence": {"tests": [{"type": "pcr", "result": "negative", "sampled_at": (
                datetime.now(timezone.utc) - timedelta(hours=hours_ago)).isoformat()}]}}
    created = site.api.post("/api/v1/residents", json=body, headers=site.bearer("authority"))
    assert created.status_code == 201, created.get_json()
    return site.code(created.get_json()["id"])


def check(page, code):
    page.fill("#manual-code", code)
    page.click("#manual-form button[type=submit]")
    page.wait_for_selector("#result[data-kind=scan]:not([hidden]):not(.result-pending)",
                           timeout=15_000)


def test_the_scanner_names_its_mode_and_the_rule_that_refused(page, mode_site):
    token = mode_site.store.create_credential("checkpoint", mode="entry-at")[1]
    page.goto(f"{mode_site.url}/checkpoint?lang=pt")
    sign_in_with_token(page, mode_site, token, "checkpoint")
    assert page.inner_text("#mode") == "Modo de controlo: Entrada na Áustria"

    check(page, code_tested(mode_site, 10))
    assert page.get_attribute("#result", "data-valid") == "true"
    assert page.is_hidden("#result-rule")
    page.click("#result-close")

    check(page, code_tested(mode_site, 100))
    result = page.locator("#result")
    assert (result.get_attribute("data-valid"), result.get_attribute("data-reason")) == (
        "false", "policy_refused")
    assert page.inner_text("#result-rule") == \
        "Regra não cumprida: O teste foi feito há no máximo 72 horas"
    assert page.is_hidden("#result-current")  # the code's colour is not what a refusal shows
    screenshot(page, "scanner-mode-refused-pt", full_page=False)


def test_without_a_mode_the_page_shows_none(page, mode_site):
    sign_in_with_token(page, mode_site, mode_site.token("checkpoint"), "checkpoint")
    assert page.locator("#mode").count() == 0
    check(page, code_tested(mode_site, 100))
    assert page.get_attribute("#result", "data-valid") == "true"  # no mode, no rules
    assert page.is_hidden("#result-rule")
