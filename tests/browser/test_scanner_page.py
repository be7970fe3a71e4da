"""The checkpoint scanner in Chromium: a fake camera showing a QR video, the paste fallback, the
look-up for residents without a phone, and the last few results kept in memory."""
import base64
import json

import pytest

from tests.browser.conftest import (FAKE_CAMERA_ARGS, launch, qr_video, screenshot,
                                    sign_in_with_token, start_site)

pytestmark = pytest.mark.browser


def tampered(code: str) -> str:
    """A red code whose payload an attacker rewrote to green, keeping the signature."""
    header, payload, signature = code.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["st"] == "red"
    claims["st"] = "green"
    forged = base64.urlsafe_b64encode(json.dumps(claims, ensure_ascii=False).encode())
    return f"{header}.{forged.decode().rstrip('=')}.{signature}"


# case -> (make the code, data-valid, data-status, data-reason, headline, words in the reason)
CASES = {
    "green": (lambda site: site.code(site.enroll("green")),
              "true", "green", "valid", "Green code", "genuine and up to date"),
    "red": (lambda site: site.code(site.enroll("red")),
            "true", "red", "valid", "Red code", "genuine and up to date"),
    "expired": (lambda site: site.expired_code(site.enroll("green")),
                "false", "", "expired", "Not valid", "The code has expired"),
    "tampered": (lambda site: tampered(site.code(site.enroll("red"))),
                 "false", "", "bad_signature", "Not valid", "altered or forged"),
}


def result_of(page, kind: str = "scan"):
    """Wait for the full-screen result (not the 'checking' placeholder) and read it."""
    page.wait_for_selector(f"#result[data-kind={kind}]:not([hidden]):not(.result-pending)",
                           timeout=15_000)
    result = page.locator("#result")
    return {name: result.get_attribute(f"data-{name}")
            for name in ("valid", "status", "reason", "latency")}


@pytest.mark.parametrize("case", list(CASES))
def test_the_camera_scan_shows_the_right_result(playwright, site, tmp_path, case):
    make, valid, status, reason, headline, words = CASES[case]
    code = make(site)
    video = qr_video(code, tmp_path)
    # one browser per video: the fake camera's file is a launch argument
    browser = launch(playwright, FAKE_CAMERA_ARGS + [f"--use-file-for-fake-video-capture={video}"])
    try:
        context = browser.new_context(locale="en-US", viewport={"width": 360, "height": 780},
                                      device_scale_factor=2, is_mobile=True, has_touch=True,
                                      permissions=["camera"])
        page = context.new_page()
        sign_in_with_token(page, site, site.token("checkpoint"), "checkpoint")
        seen = result_of(page)
        assert (seen["valid"], seen["status"], seen["reason"]) == (valid, status, reason)
        assert page.inner_text("#result-headline") == headline
        assert words in page.inner_text("#result-reason")
        assert int(seen["latency"]) < 1000, "the result took longer than a second"
        if valid == "true":
            assert page.is_visible("#result-name") and page.inner_text("#result-name")
            assert page.inner_text("#result-online") == "Checked online"
        else:
            assert page.is_hidden("#result-online")  # never reached the online check
        box = page.eval_on_selector("#result", "el => el.getBoundingClientRect().toJSON()")
        assert box["width"] >= 360 and box["height"] >= 780  # full screen
        screenshot(page, f"scanner-{case}-en", full_page=False)
        assert page.locator("#recent li").count() == 1
    finally:
        browser.close()


def test_without_a_camera_the_code_can_be_pasted(page, site):
    code = site.code(site.enroll("green"))
    sign_in_with_token(page, site, site.token("checkpoint"), "checkpoint")
    # no fake camera in this browser: the page says so and offers the camera button again
    page.wait_for_selector("#camera-start:not([hidden])")
    assert page.inner_text("#camera-status") and page.is_hidden("#video")
    screenshot(page, "scanner-en")
    page.fill("#manual-code", code)
    page.click("#manual-form button[type=submit]")
    seen = result_of(page)
    assert (seen["valid"], seen["status"]) == ("true", "green")
    assert page.inner_text("#result-name") == "陳*文"
    page.click("#result-close")
    assert page.is_hidden("#result")
    assert page.input_value("#manual-code") == ""


def test_a_superseded_code_shows_the_current_status(page, site):
    sid = site.enroll("green")
    code = site.code(sid)
    site.set_status(sid, "red", "close_contact")
    sign_in_with_token(page, site, site.token("checkpoint"), "checkpoint")
    page.fill("#manual-code", code)
    page.click("#manual-form button[type=submit]")
    seen = result_of(page)
    assert (seen["valid"], seen["reason"]) == ("false", "superseded")
    assert page.inner_text("#result-current") == "Current status: Red code"


def test_only_the_last_five_results_are_kept(page, site):
    code = site.code(site.enroll("green"))
    sign_in_with_token(page, site, site.token("checkpoint"), "checkpoint")
    for _ in range(7):
        page.fill("#manual-code", code)
        page.click("#manual-form button[type=submit]")
        result_of(page)
        page.click("#result-close")
    assert page.locator("#recent li").count() == 5
    # kept in the page's memory only: nothing in storage, gone after a reload
    assert page.evaluate("Object.keys(localStorage).length + Object.keys(sessionStorage).length") \
        == 0
    page.reload()
    assert page.locator("#recent li").count() == 0


def test_the_lookup_shows_colour_and_masked_name(page, site):
    site.enroll("red")
    sign_in_with_token(page, site, site.token("checkpoint"), "checkpoint")
    page.select_option("#doc-type", "id_card")
    page.fill("#doc-number", "1234567(8)")
    page.fill("#doc-region", "mo")
    page.click("#lookup-form button[type=submit]")
    seen = result_of(page, "lookup")
    assert seen["status"] == "red"
    assert page.inner_text("#result-headline") == "Red code"
    assert page.inner_text("#result-name") == "C**n S*u M**g"
    assert page.input_value("#doc-number") == ""  # not left on screen for the next in line
    screenshot(page, "scanner-lookup-red-en", full_page=False)
    page.click("#result-close")

    page.fill("#doc-number", "9999999(9)")
    page.click("#lookup-form button[type=submit]")
    seen = result_of(page, "lookup")
    assert seen["reason"] == "not_found"
    assert page.inner_text("#result-headline") == "Not found"
    assert page.is_hidden("#result-name-row")


def test_the_lookup_rate_limit_is_explained(context_for, tmp_path_factory, redis_server):
    limited = start_site(tmp_path_factory, redis_server, LOOKUP_RATE=1)
    try:
        page = context_for(locale="zh-TW").new_page()
        sign_in_with_token(page, limited, limited.token("checkpoint"), "checkpoint")
        for _ in range(2):
            page.fill("#doc-number", "H0000000")
            page.click("#lookup-form button[type=submit]")
            seen = result_of(page, "lookup")
            page.click("#result-close")
        assert seen["reason"] == "rate_limited"
        page.fill("#doc-number", "H0000000")
        page.click("#lookup-form button[type=submit]")
        result_of(page, "lookup")
        assert "查詢次數太多" in page.inner_text("#result-reason")
        assert "%(seconds)s" not in page.inner_text("#result-reason")
    finally:
        limited.close()


@pytest.mark.parametrize("locale, tag, heading", [
    ("zh-TW", "zh-Hant", "關口掃碼"), ("zh-CN", "zh-Hans", "关口扫码"),
    ("en-US", "en", "Checkpoint scanner"), ("pt-PT", "pt", "Leitor do posto de controlo"),
])
def test_the_scanner_speaks_each_language(context_for, site, locale, tag, heading):
    page = context_for(locale=locale).new_page()
    page.goto(f"{site.url}/checkpoint")
    screenshot(page, f"signin-checkpoint-{tag}")
    sign_in_with_token(page, site, site.token("checkpoint"), "checkpoint")
    assert page.get_attribute("html", "lang") == tag
    assert page.inner_text("h1") == heading
    screenshot(page, f"scanner-{tag}")
    code = site.code(site.enroll("green"))
    page.fill("#manual-code", code + "x")  # a broken signature
    page.click("#manual-form button[type=submit]")
    seen = result_of(page)
    assert seen["valid"] == "false"
    reason_words = page.inner_text("#result-reason")
    assert reason_words and reason_words != seen["reason"]  # words, not a code
    screenshot(page, f"scanner-result-invalid-{tag}", full_page=False)


def test_a_keyboard_wedge_scanner_runs_unattended(page, site):
    """Issue 13.8: the scanner types the code and presses Enter; each code is checked, the
    field clears and keeps focus, and a code typed over a result replaces it."""
    green = site.code(site.enroll("green"))
    red = site.code(site.enroll("red"))
    sign_in_with_token(page, site, site.token("checkpoint"), "checkpoint")
    page.focus("#manual-code")
    page.keyboard.type(green)
    page.keyboard.press("Enter")
    seen = result_of(page)
    assert (seen["valid"], seen["status"]) == ("true", "green")
    assert page.input_value("#manual-code") == ""
    # the next person's code arrives while the green result is still on screen
    page.keyboard.type(red, delay=0)
    page.keyboard.press("Enter")
    page.wait_for_selector("#result[data-status=red]:not(.result-pending)")
    assert page.locator("#recent li").count() == 2
    page.keyboard.press("Escape")
    assert page.is_hidden("#result")
    assert page.evaluate("document.activeElement.id") == "manual-code"
    page.keyboard.type(green)
    page.keyboard.press("Enter")
    assert result_of(page)["status"] == "green"
    page.click("#result-close")
    assert page.evaluate("document.activeElement.id") == "manual-code"


def test_a_superseded_code_shows_no_valid_until(page, site):
    """Issue 13.11: the old code's expiry would contradict its "not valid" headline."""
    sid = site.enroll("green")
    code = site.code(sid)
    site.set_status(sid, "red", "close_contact")
    sign_in_with_token(page, site, site.token("checkpoint"), "checkpoint")
    page.fill("#manual-code", code)
    page.click("#manual-form button[type=submit]")
    assert result_of(page)["reason"] == "superseded"
    assert page.is_hidden("#result-expiry-row")


def test_times_are_24_hour_in_chinese(context_for, site):
    page = context_for(locale="zh-TW").new_page()
    sign_in_with_token(page, site, site.token("checkpoint"), "checkpoint")
    page.fill("#manual-code", site.code(site.enroll("green")))
    page.click("#manual-form button[type=submit]")
    result_of(page)
    expiry = page.inner_text("#result-expiry")
    assert expiry and "上午" not in expiry and "下午" not in expiry
    box = page.eval_on_selector("#result-expiry-row dt", "el => el.getClientRects().length")
    assert box == 1  # "有效至" on one line


def test_the_lookup_finds_an_id_card_typed_without_brackets(page, site):
    """Issue 13.11: "1234567(8)" as printed, "12345678" as typed: the same card."""
    site.enroll("red")  # enrolled as 1234567(8)
    sign_in_with_token(page, site, site.token("checkpoint"), "checkpoint")
    page.select_option("#doc-type", "id_card")
    page.fill("#doc-number", "12345678")
    page.fill("#doc-region", "MO")
    page.click("#lookup-form button[type=submit]")
    assert result_of(page, "lookup")["status"] == "red"


def test_a_genuine_code_without_a_colour_rule_has_its_own_verdict(page, site):
    """Issue 13.9: an SHC card online, with no policy for its scheme: genuine, named, and not
    "checked offline" (the service was asked and answered)."""
    from tests.browser.offline_util import SHC_ISSUER, shc_example, trust_on_site

    trust_on_site(site)
    sign_in_with_token(page, site, site.token("checkpoint"), "checkpoint")
    page.fill("#manual-code", shc_example("00"))
    page.click("#manual-form button[type=submit]")
    seen = result_of(page)
    assert seen["valid"] == "true" and seen["status"] == ""
    assert page.inner_text("#result-headline") == "Genuine code"
    reason = page.inner_text("#result-reason")
    assert "No colour rule for SMART Health Cards here" in reason and SHC_ISSUER in reason
    assert page.inner_text("#result-online") == "Checked online"
    assert page.get_attribute("#result", "data-offline") == "false"
    screenshot(page, "scanner-genuine-no-colour-rule-en", full_page=False)


def test_the_browsers_own_barcode_detector_is_used_where_it_exists(playwright, site):
    """Issue 13.10: where Chromium has BarcodeDetector (Android, macOS; not headless Linux),
    the page reads frames with it; jsQR stays the fallback. The detector here is a stand-in
    that reports one code, so the test checks the wiring, not the decoding."""
    code = site.code(site.enroll("green"))
    browser = launch(playwright, FAKE_CAMERA_ARGS)  # the fake camera's own test pattern
    try:
        context = browser.new_context(locale="en-US", viewport={"width": 360, "height": 780},
                                      permissions=["camera"])
        context.add_init_script("""
            window.__detected = 0;
            window.BarcodeDetector = class {
                static getSupportedFormats() { return Promise.resolve(["qr_code"]); }
                constructor(options) { this.formats = options.formats; }
                detect(source) {
                    window.__detected += 1;
                    return Promise.resolve([{rawValue: %s, format: "qr_code"}]);
                }
            };""" % json.dumps(code))
        page = context.new_page()
        asked = []
        page.on("request", lambda r: asked.append(r.url))
        sign_in_with_token(page, site, site.token("checkpoint"), "checkpoint")
        seen = result_of(page)
        assert (seen["valid"], seen["status"]) == ("true", "green")
        assert page.get_attribute("#video", "data-decoder") == "native"
        assert page.get_attribute("#video", "data-read-by") == "native"
        assert page.evaluate("window.__detected") >= 1
        # the browser's decoder reads: the 0.9 MB WebAssembly one is never downloaded, nor
        # its script, nor jsQR
        assert not [url for url in asked
                    if url.endswith((".wasm", "/zxing-reader.js", "/jsQR.min.js"))]
    finally:
        browser.close()


def test_without_barcode_detector_zxing_reads_the_frames(playwright, site, tmp_path):
    """Elsewhere zxing-cpp as WebAssembly reads (jsQR only where it cannot load:
    test_scanner_reading.py)."""
    code = site.code(site.enroll("green"))
    browser = launch(playwright, FAKE_CAMERA_ARGS +
                     [f"--use-file-for-fake-video-capture={qr_video(code, tmp_path)}"])
    try:
        context = browser.new_context(locale="en-US", viewport={"width": 360, "height": 780},
                                      permissions=["camera"])
        page = context.new_page()
        sign_in_with_token(page, site, site.token("checkpoint"), "checkpoint")
        assert result_of(page)["status"] == "green"
        assert page.get_attribute("#video", "data-decoder") == "zxing"
        assert page.get_attribute("#video", "data-read-by") == "zxing"
    finally:
        browser.close()


WHY_RED = {"en-US": ("Red code", "positive test result"), "zh-TW": ("紅碼", "陽性"),
           "zh-CN": ("红码", "阳性"), "pt-PT": ("Código vermelho", "positivo")}


@pytest.mark.parametrize("locale", list(WHY_RED))
def test_a_red_code_says_why_in_the_page_language(context_for, site, locale):
    """The same reason line as the resident's page, for a scan and for a look-up (13.4)."""
    headline, why = WHY_RED[locale]
    page = context_for(locale=locale).new_page()
    sid = site.enroll("red")  # positive_test
    sign_in_with_token(page, site, site.token("checkpoint"), "checkpoint")
    page.fill("#manual-code", site.code(sid))
    page.press("#manual-code", "Enter")
    result_of(page)
    assert page.inner_text("#result-headline") == headline
    assert page.is_visible("#result-why") and why in page.inner_text("#result-why")
    screenshot(page, f"scanner-red-why-{locale}", full_page=False)
