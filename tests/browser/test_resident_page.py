"""The resident's code page in Chromium: a QR that verifies, renewed before expiry, marked stale
offline, large text for the elderly, and every language."""
import calendar
import re
import time

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.browser.conftest import (screenshot, sign_in_with_link, sign_in_with_token,
                                     wait_until)
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
    page.click("#langs summary")  # one compact menu, opened first
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


# -- the walk-through of an elderly resident at a border (issue 13) -----------------------------

SMALL_PHONE = {"width": 360, "height": 740}
BANNERS_RED = {"zh-Hant": "紅碼", "zh-Hans": "红码", "en": "Red code", "pt": "Código vermelho"}
LOCALES = {"zh-Hant": "zh-TW", "zh-Hans": "zh-CN", "en": "en-US", "pt": "pt-PT"}

#: elements whose text must never be cut off or run out of their box
TEXT_BOXES = "#banner-label, #masked-name, .times dd, .times dt, .key, .hint, .advice span, " \
             "#large-text, .langs summary, .signout button"


def overflowing(page) -> list[str]:
    """Elements whose text is wider than their box or that stick out of the screen, and the
    page's own sideways overflow, each described for the failure message."""
    return page.evaluate("""selector => {
        const out = [];
        const root = document.documentElement;
        const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
            (el.className && typeof el.className === 'string' ? '.' + el.className.split(' ')[0] : '');
        if (root.scrollWidth > root.clientWidth + 1) out.push('page ' + root.scrollWidth + '>' + root.clientWidth);
        for (const el of document.querySelectorAll('body *')) {
            if (!el.offsetParent || el.closest('details:not([open]) > :not(summary)')) continue;
            const box = el.getBoundingClientRect();
            if (box.right > root.clientWidth + 1) out.push('outside ' + name(el) + ' right=' + Math.round(box.right));
        }
        for (const el of document.querySelectorAll(selector)) {
            // hidden, or inline (an inline box has no width of its own to overflow)
            if (!el.offsetParent || getComputedStyle(el).display === 'inline') continue;
            if (el.scrollWidth > el.clientWidth + 1) out.push('clipped ' + name(el) + ' ' + el.scrollWidth + '>' + el.clientWidth);
        }
        return out;
    }""", TEXT_BOXES)


def bottom_of(page, selector: str) -> float:
    return page.eval_on_selector(selector, "el => el.getBoundingClientRect().bottom")


@pytest.mark.parametrize("tag", list(LOCALES))
def test_in_large_text_the_banner_name_and_whole_qr_fit_the_first_screen(context_for, site, tag):
    page = context_for(locale=LOCALES[tag]).new_page()
    page.set_viewport_size(SMALL_PHONE)
    sid = site.enroll("red")
    sign_in_with_link(page, site.link(sid))
    page.click("#large-text")
    assert font_px(page, "body") >= 24
    assert page.inner_text("#banner-label") == BANNERS_RED[tag]
    for selector in ("#banner", "#masked-name", "#qr"):
        assert bottom_of(page, selector) <= SMALL_PHONE["height"], \
            f"{selector} ends {bottom_of(page, selector)} px down ({tag})"
    assert page.evaluate("window.scrollY") == 0
    found = overflowing(page)
    assert not found, f"{tag}: {'; '.join(found)}"
    # the banner word stays on one line at 360 px: "Código vermelho" included
    lines = page.eval_on_selector(
        "#banner-label", "el => Math.round(el.getBoundingClientRect().height / "
                         "parseFloat(getComputedStyle(el).lineHeight))")
    assert lines == 1, f"the banner word wraps onto {lines} lines ({tag})"
    assert site.verify(qr_text(page))["status"] == "red"
    screenshot(page, f"resident-large-text-first-screen-{tag}", full_page=False)


@pytest.mark.parametrize("tag", list(LOCALES))
@pytest.mark.parametrize("width", [360, 180])
def test_text_at_200_percent_reflows_without_sideways_scrolling(context_for, site, tag, width):
    """WCAG 1.4.10: doubled text, in both text modes, down to a 180 px wide screen."""
    page = context_for(locale=LOCALES[tag]).new_page()
    page.set_viewport_size({"width": width, "height": 740})
    sid = site.enroll("red")
    sign_in_with_link(page, site.link(sid))
    for large in (False, True):
        if large:
            page.click("#large-text")
        # the root font doubled, as a browser's text-size setting does (through the CSSOM,
        # which the pages' CSP allows)
        page.evaluate("large => { const root = document.documentElement;"
                      " root.style.fontSize = ''; const px = parseFloat(getComputedStyle(root)"
                      ".fontSize); root.style.fontSize = (px * 2) + 'px'; }", large)
        found = overflowing(page)
        assert not found, f"{tag} at {width} px, large text {large}: {'; '.join(found)}"
        assert page.is_visible("#qr")
        screenshot(page, f"resident-200pct-{width}-{'large-' if large else ''}{tag}")


@pytest.mark.parametrize("tag", list(LOCALES))
def test_yellow_and_red_say_why_and_what_to_do(context_for, site, tag):
    page = context_for(locale=LOCALES[tag]).new_page()
    sid = site.enroll("red")  # positive_test
    sign_in_with_link(page, site.link(sid))
    why, next_step = page.inner_text("#advice-why"), page.inner_text("#advice-next")
    expected = {"en": ("positive test result", "Isolate"), "pt": ("positivo", "isolado"),
                "zh-Hant": ("陽性", "隔離"), "zh-Hans": ("阳性", "隔离")}[tag]
    assert expected[0] in why.lower() or expected[0] in why, why
    assert expected[1] in next_step, next_step
    screenshot(page, f"resident-red-advice-{tag}")


def test_a_status_change_reaches_the_open_page_within_five_seconds(page, site):
    """With the default five-minute code, the page learns of a change by push, not renewal."""
    assert site.app.config["CODE_TTL"] == 300
    sid = site.enroll("green")
    sign_in_with_link(page, site.link(sid))
    assert page.get_attribute("#code", "data-status") == "green"
    page.wait_for_timeout(1500)  # the page's event stream is open
    started = time.monotonic()
    site.set_status(sid, "yellow", "close_contact")
    page.wait_for_selector("#code[data-status=yellow]", timeout=5_000)
    took = time.monotonic() - started
    print(f"\nstatus push: the open page showed the new status after {took:.2f} s")
    assert took <= 5
    assert "close contact" in page.inner_text("#advice-why")
    assert "Your code is now: Yellow code." in page.inner_text("#announce")
    assert site.verify(qr_text(page))["status"] == "yellow"


def test_an_expired_sign_in_says_so_and_how_to_get_a_new_link(tmp_path_factory, redis_server,
                                                                context_for):
    from tests.browser.conftest import start_site

    data = tmp_path_factory.mktemp("texts")
    (data / "page-texts.toml").write_text(
        '[signin_help.en]\ntext = "Ask for a new link at any health centre."\n'
        'contact = "Health hotline 2800 0000"\n', encoding="utf-8")
    site = start_site(tmp_path_factory, redis_server, DATA_DIR=str(data))
    try:
        page = context_for().new_page()
        sid = site.enroll("green")
        sign_in_with_link(page, site.link(sid))
        # the session runs out on the server (as SESSION_TTL does)
        for key in site.store.r.scan_iter("hc:sess:*"):
            site.store.r.delete(key)
        page.reload()
        assert page.inner_text("#signin-expired").startswith("Your sign-in has expired.")
        assert "Ask for a new link at any health centre." in page.inner_text("#signin-expired")
        assert page.inner_text("#signin-contact") == "Health hotline 2800 0000"
        assert page.is_visible("#token"), "the access-code form stays for those who have one"
        screenshot(page, "resident-signin-expired-en")
        # a first visit on another device says nothing about expiry
        other = context_for().new_page()
        other.goto(f"{site.url}/me")
        assert other.locator("#signin-expired").count() == 0
    finally:
        site.close()


def transfer_meter(page):
    """Bytes on the wire (compressed, headers included) per URL path, from DevTools."""
    from urllib.parse import urlparse

    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    urls, sizes = {}, []
    cdp.on("Network.requestWillBeSent",
           lambda e: urls.__setitem__(e["requestId"], urlparse(e["request"]["url"]).path))
    cdp.on("Network.loadingFinished",
           lambda e: sizes.append((urls.get(e["requestId"], "?"), e["encodedDataLength"])))
    return sizes


def test_the_page_is_light_on_a_weak_signal(page, short_site):
    sid = short_site.enroll("green")
    sign_in_with_link(page, short_site.link(sid))
    sizes = transfer_meter(page)
    page.goto(f"{short_site.url}/me")
    page.wait_for_load_state("networkidle")
    load = sum(size for path, size in sizes if path != "/me/events")
    first = list(sizes)
    renewed = []
    for _ in range(70):  # Playwright delivers DevTools events while it waits, not in sleep()
        page.wait_for_timeout(200)
        renewed = [s for p, s in sizes[len(first):] if p == "/me/code"]
        if renewed:
            break
    assert renewed, "no renewal within 14 s"
    print(f"\n/me: {load / 1024:.1f} KB per load ({len(first)} requests, cache off), "
          f"{renewed[0] / 1024:.2f} KB per renewal")
    assert load <= 40 * 1024, first
    assert renewed[0] <= 10 * 1024
    # scripts and styles are cached for a year under names that change with their content
    response = page.request.get(page.eval_on_selector("link[rel=stylesheet]", "el => el.href"))
    assert "immutable" in response.headers["cache-control"]
    assert response.headers.get("content-encoding") in ("br", "gzip")


def test_axe_finds_no_violation_in_any_state(context_for, short_site):
    from tests.browser.axe import violations

    page = context_for(bypass_csp=True).new_page()
    page.goto(f"{short_site.url}/me")
    assert violations(page) == [], "sign-in page"
    for kind in ("green", "red"):
        sid = short_site.enroll(kind)
        sign_in_with_link(page, short_site.link(sid))
        assert violations(page) == [], kind
        page.click("#large-text")
        assert violations(page) == [], f"{kind}, large text"
        page.click("#large-text")
        page.click("#langs summary")
        assert violations(page) == [], f"{kind}, language menu open"
    page.route("**/me/code", lambda route: route.abort("internetdisconnected"))
    page.wait_for_selector("#code[data-state=stale]", timeout=20_000)
    assert violations(page) == [], "out of date"
    assert page.inner_text("#announce").startswith("Out of date")


def test_reloading_offline_shows_the_last_code_as_out_of_date(context_for, short_site):
    context = context_for()
    page = context.new_page()
    sid = short_site.enroll("green")
    sign_in_with_link(page, short_site.link(sid))
    # the page's worker takes control as soon as it has kept the offline page
    wait_until(page, "navigator.serviceWorker.controller !== null", 15)
    context.set_offline(True)
    page.reload()
    page.wait_for_selector("#code[data-state=stale]")
    assert page.inner_text("#banner-label") == "Out of date"
    assert page.locator("#qr").count() == 0, "offline, no code is shown at all"
    assert "Do not show it" in page.inner_text("#stale-note")
    page.wait_for_selector("#last-known:not([hidden])")
    assert "Green code" in page.inner_text("#last-known")
    assert page.inner_text("#masked-name") == "陳*文"
    assert page.is_visible("#retry")  # a way back, by hand
    screenshot(page, "resident-offline-reload-en")
    # back online, the stand-in goes back to the live page by itself (its "online" listener)
    # or when the resident reloads: either way the live code is shown again
    context.set_offline(False)
    try:
        page.wait_for_selector("#code[data-state=fresh]", timeout=5_000)
    except PlaywrightTimeoutError:
        page.goto(f"{short_site.url}/me")
        page.wait_for_selector("#code[data-state=fresh]", timeout=15_000)
    assert short_site.verify(qr_text(page))["valid"] is True
