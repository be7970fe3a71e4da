"""The scanner when the network drops (issue 12), in Chromium: codes of every scheme the page can
check are judged offline against the signed trust bundle and say so; an out-of-date bundle and
a missing one are "could not check", never "not valid"; going back online checks online again.
"""
from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.browser.conftest import (FAKE_CAMERA_ARGS, launch, qr_video, screenshot,
                                    sign_in_with_token, wait_until)
from tests.browser.offline_util import (TestSigner, payload_for, routed_context,
                                        shc_example, sign_bundle, trust_on_site)
from tests.browser.test_scanner_page import result_of, tampered

pytestmark = pytest.mark.browser


def one_shot(site, name="Maria Santos", status="green", ttl=3600) -> str:
    response = site.api.post("/api/v1/codes", json={"name": name, "status": status, "ttl": ttl},
                             headers=site.bearer("authority"))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["code"]


def revoke(site, code: str) -> None:
    response = site.api.post("/api/v1/codes/revoke", json={"code": code},
                             headers=site.bearer("authority"))
    assert response.status_code == 200, response.get_json()


def open_scanner(page, site, state: str = "current") -> None:
    sign_in_with_token(page, site, site.token("checkpoint"), "checkpoint")
    page.wait_for_selector(f"#trust-status[data-state={state}]", timeout=15_000)


def paste(page, code: str) -> dict:
    page.fill("#manual-code", code)
    page.click("#manual-form button[type=submit]")
    seen = result_of(page)
    seen.update(offline=page.get_attribute("#result", "data-offline"),
                tone=page.get_attribute("#result", "class"),
                headline=page.inner_text("#result-headline"),
                detail=page.inner_text("#result-reason"),
                online=page.inner_text("#result-online") if page.is_visible("#result-online")
                else "")
    page.click("#result-close")
    return seen


@pytest.fixture
def signer():
    return TestSigner()


def test_offline_the_page_judges_every_scheme_it_can(context_for, site, signer):
    green = site.code(site.enroll("green"))
    forged = tampered(site.code(site.enroll("red")))
    withdrawn = one_shot(site)
    revoke(site, withdrawn)
    kept = one_shot(site, name="Ana Lopes")
    dcc = signer.dcc()
    trust_on_site(site, signer)  # the service's own bundle then carries them: no routing
    context = context_for()
    page = context.new_page()
    open_scanner(page, site)
    assert "Offline checks ready" in page.inner_text("#trust-status")
    context.set_offline(True)

    seen = paste(page, green)
    assert (seen["valid"], seen["status"], seen["offline"]) == ("true", "green", "true")
    assert seen["headline"] == "Green code"
    assert seen["online"].startswith("Checked offline · trust data of ")
    assert "colour as issued at" in seen["online"]  # a dynamic code: status as of its issue

    seen = paste(page, forged)
    assert (seen["valid"], seen["reason"], seen["offline"]) == ("false", "bad_signature", "true")
    assert seen["headline"] == "Not valid" and "altered or forged" in seen["detail"]
    assert "result-invalid" in seen["tone"]
    assert seen["online"].startswith("Checked offline")

    seen = paste(page, withdrawn)
    assert (seen["valid"], seen["reason"]) == ("false", "revoked")
    assert "revoked" in seen["detail"]
    seen = paste(page, kept)  # another one-shot code is not caught by the list
    assert (seen["valid"], seen["status"]) == ("true", "green")
    assert "colour as issued" not in seen["online"]  # one-shot codes carry no live status

    seen = paste(page, shc_example("00"))
    assert (seen["valid"], seen["offline"]) == ("true", "true")
    assert seen["headline"] == "Genuine code"
    assert "SMART Health Cards" in seen["detail"]
    assert seen["online"].startswith("Checked offline")

    page.fill("#manual-code", dcc)
    page.click("#manual-form button[type=submit]")
    seen = result_of(page)
    assert (seen["valid"], page.get_attribute("#result", "data-offline")) == ("true", "true")
    assert page.inner_text("#result-headline") == "Genuine code"
    assert "EU Digital COVID Certificates" in page.inner_text("#result-reason")
    assert page.inner_text("#result-name") == "G******e M********u"
    screenshot(page, "scanner-offline-dcc-en", full_page=False)
    page.click("#result-close")

    # each result was kept as judged; none of them as "could not check"
    items = page.locator("#recent li").all_inner_texts()
    assert len(items) == 5 and not any("Could not check" in item for item in items)


def test_offline_a_revoked_card_on_the_issuers_list_is_refused(context_for, site):
    """SHC example 03 is on its issuer's revocation list, and expired since June 2024."""
    trust_on_site(site)
    context = context_for()
    page = context.new_page()
    open_scanner(page, site)
    context.set_offline(True)
    seen = paste(page, shc_example("03"))
    assert (seen["valid"], seen["reason"]) == ("false", "expired")  # expiry is checked first
    seen = paste(page, shc_example("02"))  # a lab result card: genuine, no Patient name
    assert seen["valid"] == "true"


def test_offline_a_camera_scan_is_checked_offline(playwright, site, tmp_path):
    code = site.code(site.enroll("green"))
    browser = launch(playwright, FAKE_CAMERA_ARGS +
                     [f"--use-file-for-fake-video-capture={qr_video(code, tmp_path)}"])
    try:
        context = browser.new_context(locale="zh-TW", viewport={"width": 360, "height": 780},
                                      device_scale_factor=2, is_mobile=True, has_touch=True,
                                      permissions=["camera"])
        trust_on_site(site)
        page = context.new_page()
        # offline before the camera's first frame is read: wait for the bundle, then cut
        page.route("**/api/v1/verify", lambda route: route.abort("internetdisconnected"))
        open_scanner(page, site)
        seen = result_of(page)
        assert (seen["valid"], seen["status"]) == ("true", "green")
        assert page.get_attribute("#result", "data-offline") == "true"
        assert page.inner_text("#result-headline") == "綠碼"
        assert page.inner_text("#result-online").startswith("離線核驗")
        screenshot(page, "scanner-offline-green-zh-Hant", full_page=False)
    finally:
        browser.close()


def test_an_expired_bundle_is_out_of_date_not_a_verdict(context_for, site):
    code = site.code(site.enroll("green"))
    stale = payload_for(site, issued_at=time.time() - 2 * 86400)
    context = routed_context(context_for, sign_bundle(site, stale))
    page = context.new_page()
    open_scanner(page, site, state="expired")
    assert page.inner_text("#trust-status") == "Trust data out of date: connect to update"
    context.set_offline(True)
    seen = paste(page, code)
    assert seen["reason"] == "trust_expired" and seen["valid"] == ""
    assert seen["headline"] == "Trust data out of date"
    assert "not a verdict" in seen["detail"]
    assert "result-unchecked" in seen["tone"] and "result-invalid" not in seen["tone"]
    page.fill("#manual-code", code)
    page.click("#manual-form button[type=submit]")
    result_of(page)
    screenshot(page, "scanner-offline-trust-expired-en", full_page=False)


def test_without_a_bundle_a_failed_request_could_not_check(context_for, site):
    code = site.code(site.enroll("green"))
    context = routed_context(context_for, None)
    page = context.new_page()
    open_scanner(page, site, state="none")
    context.set_offline(True)
    page.fill("#manual-code", code)
    page.click("#manual-form button[type=submit]")
    seen = result_of(page)
    assert seen["valid"] == "" and seen["reason"] == "network"
    assert page.inner_text("#result-headline") == "Could not check"
    assert "no trust data" in page.inner_text("#result-reason")
    look = page.eval_on_selector("#result", """el => {
        const s = getComputedStyle(el), sym = getComputedStyle(el.querySelector('.result-symbol'),
                                                                '::before');
        return {bg: s.backgroundColor, outline: s.outlineStyle, symbol: sym.content};
    }""")
    # its own colour, shape and symbol: not the red of a refusal, a dashed frame, a retry arrow
    assert look == {"bg": "rgb(31, 78, 156)", "outline": "dashed", "symbol": '"↻"'}
    screenshot(page, "scanner-could-not-check-en", full_page=False)
    page.click("#result-close")
    items = page.locator("#recent li")
    assert items.count() == 1
    assert "Could not check" in items.first.inner_text()
    assert "Not valid" not in items.first.inner_text()
    assert items.first.get_attribute("class") == "recent-unchecked"


def test_a_failing_service_falls_back_to_the_bundle(context_for, site):
    """The network is up but the service answers 503: the page checks offline."""
    code = site.code(site.enroll("green"))
    trust_on_site(site)
    context = context_for()
    page = context.new_page()
    open_scanner(page, site)
    page.route("**/api/v1/verify", lambda route: route.fulfill(
        status=503, content_type="application/json",
        body='{"error": "store_unavailable", "message": "down"}'))
    seen = paste(page, code)
    assert (seen["valid"], seen["status"], seen["offline"]) == ("true", "green", "true")


def test_the_store_outage_answer_shows_the_tokens_colour(context_for, tmp_path_factory):
    """Redis stops under a running service: the API answers from the token alone
    (checked_online false), and the page shows that answer as such, in the token's colour."""
    from tests.browser.conftest import start_site
    from tests.support import RedisProcess

    own_redis = RedisProcess()
    own_redis.start()
    site = start_site(tmp_path_factory, own_redis, CREDENTIAL_CACHE_SECONDS=30)
    try:
        code = site.code(site.enroll("red"))
        page = context_for().new_page()
        open_scanner(page, site)
        own_redis.stop()
        seen = paste(page, code)
        assert (seen["valid"], seen["status"], seen["offline"]) == ("true", "red", "false")
        assert seen["headline"] == "Red code"
        assert seen["online"].startswith(
            "Checked online, but the current status could not be asked")
    finally:
        site.close()
        own_redis.close()


def test_back_online_the_page_checks_online_again(context_for, site):
    code = site.code(site.enroll("green"))
    trust_on_site(site)
    context = context_for()
    page = context.new_page()
    open_scanner(page, site)
    context.set_offline(True)
    assert paste(page, code)["offline"] == "true"
    context.set_offline(False)
    seen = paste(page, code)
    assert (seen["valid"], seen["offline"], seen["online"]) == ("true", "false", "Checked online")


def _stranger_signed(site):
    stranger = ec.generate_private_key(ec.SECP256R1())
    active = site.app.extensions["healthcode.keys"].active
    return sign_bundle(site, payload_for(site), key=stranger, kid=active.kid)


def _one_of_our_codes(site):
    """Signed by our key, but a health code: its type keeps it from passing as a bundle."""
    return site.code(site.enroll("green"))


@pytest.mark.parametrize("make", [_stranger_signed, _one_of_our_codes],
                         ids=["signed by a stranger", "a health code of ours"])
def test_a_bundle_not_signed_by_our_key_is_never_used(context_for, site, make):
    forged = make(site)
    context = routed_context(context_for, forged)
    page = context.new_page()
    sign_in_with_token(page, site, site.token("checkpoint"), "checkpoint")
    page.wait_for_selector("#trust-status[data-refreshes='1']")
    assert page.get_attribute("#trust-status", "data-state") == "none"


def test_the_lookup_says_it_needs_the_service(context_for, site):
    trust_on_site(site)
    context = context_for()
    page = context.new_page()
    open_scanner(page, site)
    context.set_offline(True)
    page.fill("#doc-number", "H1234567")
    page.click("#lookup-form button[type=submit]")
    seen = result_of(page, "lookup")
    assert seen["reason"] == "network"
    assert page.inner_text("#result-headline") == "Could not check"
    assert "need the service" in page.inner_text("#result-reason")


def test_an_icao_seal_offline_says_it_needs_the_service(context_for, site):
    trust_on_site(site)
    context = context_for()
    page = context.new_page()
    open_scanner(page, site)
    context.set_offline(True)
    seen = paste(page, '{"data": {"hdr": {"is": "UTO"}}, "sig": {"alg": "ES256"}}')
    assert seen["reason"] == "offline_unsupported" and seen["headline"] == "Could not check"
    assert "ICAO" in seen["detail"]


def test_the_page_reloads_offline_from_the_service_worker(context_for, site):
    code = site.code(site.enroll("green"))
    trust_on_site(site)
    context = context_for()
    page = context.new_page()
    open_scanner(page, site)
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    # installing, the worker kept this page as well as its scripts: no second visit needed
    wait_until(page, """caches.open('hc-checkpoint-v1').then(c => c.match('/checkpoint'))
                              .then(r => Boolean(r))""")
    context.set_offline(True)
    page.reload()
    page.wait_for_selector("#manual-form")
    page.wait_for_selector("#trust-status[data-state=current]", timeout=15_000)
    seen = paste(page, code)
    assert (seen["valid"], seen["status"], seen["offline"]) == ("true", "green", "true")
    # the camera decoders too, which this page never loaded (no camera here): the worker
    # fetched them when it installed, and answers for them offline
    assert page.evaluate("""() => {
        const page = JSON.parse(document.getElementById('hc-page').textContent);
        const run = (url) => new Promise((resolve, reject) => {
            const tag = document.createElement('script');
            tag.src = url;
            tag.onload = resolve;
            tag.onerror = reject;
            document.head.appendChild(tag);
        });
        return run(page.scripts.jsqr).then(() => run(page.scripts.zxing)).then(() =>
            ZXingWASM.prepareZXingModule({overrides: {locateFile: () => page.zxing_wasm_url},
                                          fireImmediately: true}))
            .then(() => typeof jsQR === 'function');
    }""")
    screenshot(page, "scanner-offline-reloaded-en")


def test_a_service_that_does_not_answer_is_not_waited_for(context_for, site):
    """The network is up but the answer never comes ("lie-fi"): after 4 s the page checks
    offline rather than hold the queue."""
    code = site.code(site.enroll("green"))
    trust_on_site(site)
    context = context_for()
    page = context.new_page()
    open_scanner(page, site)
    held = []
    page.route("**/api/v1/verify", lambda route: held.append(route))  # never answered
    started = time.monotonic()
    seen = paste(page, code)
    waited = time.monotonic() - started
    assert (seen["valid"], seen["status"], seen["offline"]) == ("true", "green", "true")
    assert 3.5 < waited < 10


def test_signing_out_drops_the_kept_page(context_for, site):
    """The kept page holds the session's CSRF token: it goes with the session. The sign-out
    post itself is outside the worker's scope; the sign-in page it leads to is not."""
    trust_on_site(site)
    context = context_for()
    page = context.new_page()
    open_scanner(page, site)
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    wait_until(page, "navigator.serviceWorker.controller !== null")
    wait_until(page, """caches.open('hc-checkpoint-v1').then(c => c.match('/checkpoint'))
                              .then(r => Boolean(r))""")
    page.click("form.signout button[type=submit]")
    page.wait_for_selector("#token")
    wait_until(page, """caches.open('hc-checkpoint-v1').then(c => c.match('/checkpoint'))
                              .then(r => !r)""")


def test_stale_trust_sources_are_mentioned(context_for, site):
    stale = payload_for(site, warnings=[{"code": "stale_trust_source",
                                         "message": "de-dsc-list.json is 9 days old"}])
    context = routed_context(context_for, sign_bundle(site, stale))
    page = context.new_page()
    open_scanner(page, site)
    assert page.get_attribute("#trust-status", "data-warnings") == "1"
    assert page.inner_text("#trust-status").endswith("1 trust sources not updated lately")
