"""The resident's code page in Chromium: a QR that verifies, renewed before expiry, marked stale
offline, large text for the elderly, and every language."""
import calendar
import re
import time

import pytest

from tests.browser.conftest import screenshot, sign_in_with_link, sign_in_with_token
from tests.support import decode_qr

pytestmark = pytest.mark.browser


def qr_text(page) -> str:
    """What a scanner reads off the screen: the QR decoded from a screenshot of the element."""
    return decode_qr(page.locator("#qr").screenshot())


def wait_for(predicate, seconds: float, every: float = 0.2):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not within {seconds} s")


def test_the_page_shows_a_code_that_verifies_as_the_current_status(page, short_site):
    sid = short_site.enroll("green")
    sign_in_with_link(page, short_site.link(sid))
    assert page.url == f"{short_site.url}/me"  # the one-time token is gone from the address bar
    assert page.title() == "Health code"
    assert page.inner_text("#banner-label") == "Green code"
    assert page.inner_text("#masked-name") == "陳*文"
    answer = short_site.verify(qr_text(page))
    assert answer["valid"] is True and answer["status"] == "green"
    assert answer["subject"]["masked_name"] == "陳*文"
    screenshot(page, "resident-green-en")

    # the authority changes the status: the open page follows, and so does its QR
    short_site.set_status(sid, "red", "close_contact")
    page.wait_for_selector("#code[data-status=red]", timeout=15_000)
    assert page.inner_text("#banner-label") == "Red code"
    answer = short_site.verify(qr_text(page))
    assert answer["valid"] is True and answer["status"] == "red"
    screenshot(page, "resident-red-en")


def test_the_page_renews_the_code_before_it_expires(page, short_site):
    sid = short_site.enroll("green")
    sign_in_with_token(page, short_site, short_site.token("resident", sid), "me")
    page.evaluate("window.__notReloaded = true")
    first_expiry = page.get_attribute("#code", "data-expires-at")
    first_text = qr_text(page)
    expires_at = short_site.verify(first_text)["expires_at"]
    deadline = calendar.timegm(time.strptime(expires_at, "%Y-%m-%dT%H:%M:%SZ"))

    renewed = wait_for(lambda: page.get_attribute("#code", "data-expires-at") != first_expiry,
                       seconds=14)
    assert renewed and time.time() < deadline, "the code was renewed only after it expired"
    assert page.evaluate("window.__notReloaded") is True  # no reload: the script renewed it
    assert page.get_attribute("#code", "data-state") == "fresh"
    second_text = qr_text(page)
    assert second_text != first_text
    answer = short_site.verify(second_text)
    assert answer["valid"] is True and answer["status"] == "green"


def test_offline_the_page_says_the_code_is_stale_and_recovers(page, short_site):
    sid = short_site.enroll("green")
    sign_in_with_link(page, short_site.link(sid))
    page.route("**/me/code", lambda route: route.abort("internetdisconnected"))
    page.wait_for_selector("#notice:not([hidden])", timeout=14_000)
    assert "No connection" in page.inner_text("#notice")
    page.wait_for_selector("#code[data-state=stale]", timeout=14_000)
    assert page.inner_text("#banner-label") == "Out of date"
    assert page.is_hidden("#qr"), "an expired code must not be shown"
    assert "Do not show it" in page.inner_text("#stale-note")
    screenshot(page, "resident-stale-en")

    page.unroute("**/me/code")
    page.wait_for_selector("#code[data-state=fresh]", timeout=15_000)
    assert page.is_visible("#qr")
    assert short_site.verify(qr_text(page))["valid"] is True


def font_px(page, selector: str) -> float:
    return float(page.eval_on_selector(
        selector, "el => getComputedStyle(el).fontSize").removesuffix("px"))


def test_large_text_mode_is_large_remembered_and_holds_no_credential(page, short_site):
    sid = short_site.enroll("green")
    sign_in_with_link(page, short_site.link(sid))
    assert font_px(page, "body") < 24
    page.click("#large-text")
    assert page.get_attribute("#large-text", "aria-pressed") == "true"
    assert page.inner_text("#large-text") == "Large text: on"
    for selector in ("body", ".hint", "#masked-name", "#large-text", "dt"):
        assert font_px(page, selector) >= 24, selector
    height = page.eval_on_selector(".signout button", "el => el.getBoundingClientRect().height")
    assert height >= 56  # a big touch target
    screenshot(page, "resident-large-text-en")

    page.reload()
    assert page.evaluate("document.documentElement.classList.contains('large-text')")
    assert font_px(page, "body") >= 24
    # the only thing kept in localStorage is this preference; the session cookie is HttpOnly
    assert page.evaluate("Object.keys(localStorage)") == ["hc-large-text"]
    assert "hc_session" not in page.evaluate("document.cookie")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["hc_session"]["httpOnly"] and cookies["hc_session"]["sameSite"] == "Strict"

    page.click("#large-text")
    assert font_px(page, "body") < 24


def test_the_page_fits_a_phone_without_sideways_scrolling(page, short_site):
    sid = short_site.enroll("green")
    sign_in_with_link(page, short_site.link(sid))
    for large in (False, True):
        if large:
            page.click("#large-text")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, f"the page is {width} px wide (large text: {large})"
        qr_box = page.eval_on_selector("#qr", "el => el.getBoundingClientRect().width")
        assert qr_box >= 250


LANGUAGES = [
    # browser locale, html lang, banner, "valid until", sign-in title
    ("zh-TW", "zh-Hant", "綠碼", "有效至", "健康碼"),
    ("zh-CN", "zh-Hans", "绿码", "有效至", "健康码"),
    ("en-US", "en", "Green code", "Valid until", "Health code"),
    ("pt-PT", "pt", "Código verde", "Válido até", "Código de saúde"),
]


@pytest.mark.parametrize("locale, tag, banner, valid_until, title", LANGUAGES)
def test_each_language_renders(context_for, short_site, locale, tag, banner, valid_until,
                               title):
    page = context_for(locale=locale).new_page()
    sid = short_site.enroll("green")
    page.goto(f"{short_site.url}/me")
    assert page.get_attribute("html", "lang") == tag
    assert page.title() == title
    screenshot(page, f"signin-me-{tag}")
    page.goto(short_site.link(sid))
    screenshot(page, f"link-{tag}")
    page.click("#continue")
    page.wait_for_selector("#code")
    assert page.get_attribute("html", "lang") == tag
    assert page.inner_text("#banner-label") == banner
    assert valid_until in page.inner_text(".times")
    assert page.title() == title
    assert re.search(r"\d\d:\d\d:\d\d", page.inner_text("#clock")), "the live clock runs"
    screenshot(page, f"resident-{tag}")
    page.click("#large-text")
    assert font_px(page, "body") >= 24
    screenshot(page, f"resident-large-text-{tag}")


def test_the_switcher_changes_the_language_and_keeps_it(page, short_site):
    sid = short_site.enroll("green")
    sign_in_with_link(page, short_site.link(sid))
    page.click("a[hreflang=zh-Hant]")
    page.wait_for_selector("html[lang=zh-Hant]")
    assert page.inner_text("#banner-label") == "綠碼"
    assert page.url.endswith("/me?lang=zh-Hant")  # nothing personal in the address
    page.goto(f"{short_site.url}/me")
    assert page.get_attribute("html", "lang") == "zh-Hant"  # remembered


def test_signing_out_ends_the_page(page, short_site):
    sid = short_site.enroll("green")
    sign_in_with_link(page, short_site.link(sid))
    page.click(".signout button")
    page.wait_for_selector("#token")
    assert "You have signed out." in page.inner_text("main")
    assert not [c for c in page.context.cookies() if c["name"] == "hc_session"]
    page.goto(f"{short_site.url}/me")
    assert page.locator("#code").count() == 0
