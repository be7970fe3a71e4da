"""The scanner's weight on a weak signal (issue 13.11): a first visit loads at most 100 KB
(compressed, headers included) before the page is usable (HTML, styles and the scripts that
check a typed or pasted code online); the trust bundle follows once the page has loaded, and the
camera decoders only when the camera starts and the browser cannot read QR codes itself.

Measured from DevTools (Network.encodedDataLength: bytes as received, Content-Encoding and
headers included) in a fresh browser context (no HTTP cache, no service worker) that carries a
signed-in session's cookies, so that the sign-in page's visit does not warm the cache.
"""
from __future__ import annotations

from urllib.parse import urlparse

import pytest

from tests.browser.conftest import FAKE_CAMERA_ARGS, launch, qr_video, sign_in_with_token
from tests.browser.test_scanner_page import result_of

pytestmark = pytest.mark.browser

FIRST_LOAD_GOAL = 100 * 1024
DECODERS = ("/vendor/zxing-reader.js", "/vendor/zxing_reader.wasm", "/vendor/jsQR.min.js")


class Meter:
    """Every request the page makes: its path, when it was sent, bytes received, and whether
    it was sent before the page's load event (the first load)."""

    def __init__(self, page):
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Network.enable")
        self.cdp.send("Page.enable")
        self.sent: dict[str, tuple[str, float]] = {}
        self.received: dict[str, int] = {}
        self.loaded_at: float | None = None
        self.cdp.on("Network.requestWillBeSent", lambda e: self.sent.__setitem__(
            e["requestId"], (urlparse(e["request"]["url"]).path, e["timestamp"])))
        self.cdp.on("Network.loadingFinished", lambda e: self.received.__setitem__(
            e["requestId"], e["encodedDataLength"]))
        self.cdp.on("Page.loadEventFired", lambda e: setattr(self, "loaded_at", e["timestamp"]))

    def requests(self) -> list[tuple[str, int, bool]]:
        """(path, bytes, sent before the load event) of each finished request."""
        assert self.loaded_at is not None, "the page never fired its load event"
        return [(path, self.received[rid], at < self.loaded_at)
                for rid, (path, at) in self.sent.items() if rid in self.received]

    def first_load(self) -> list[tuple[str, int]]:
        return [(path, size) for path, size, first in self.requests() if first]

    def later(self) -> list[tuple[str, int]]:
        return [(path, size) for path, size, first in self.requests() if not first]


def fresh_signed_in_page(browser, site, **options):
    """A page in a new context (empty cache, no worker) signed in as a checkpoint: the session
    cookies come from another context that went through the sign-in form."""
    other = browser.new_context(locale="en-US")
    helper = other.new_page()
    sign_in_with_token(helper, site, site.token("checkpoint"), "checkpoint")
    cookies = other.cookies()
    other.close()
    context = browser.new_context(locale="en-US", viewport={"width": 360, "height": 780},
                                  device_scale_factor=2, is_mobile=True, has_touch=True,
                                  **options)
    context.add_cookies(cookies)
    return context, context.new_page()


def kb(entries) -> float:
    return sum(size for _, size in entries) / 1024


def listed(entries) -> str:
    """'name KB, ...' for a report line."""
    return ", ".join(f"{path.rsplit('/', 1)[-1] or path} {size / 1024:.1f}"
                     for path, size in entries)


def decoders_in(entries) -> list[str]:
    return [path for path, _ in entries if path.endswith(DECODERS)]


def test_the_first_load_is_at_most_100_kb_and_the_bundle_comes_after(browser, site):
    code = site.code(site.enroll("green"))
    context, page = fresh_signed_in_page(browser, site)  # this browser has no camera
    try:
        meter = Meter(page)
        page.goto(f"{site.url}/checkpoint")
        page.wait_for_selector("#trust-status[data-refreshes='1']", timeout=15_000)
        page.wait_for_load_state("networkidle")
        first, later = meter.first_load(), meter.later()
        print(f"\n/checkpoint first load: {kb(first):.1f} KB in {len(first)} requests "
              f"({listed(first)}); after load: {kb(later):.1f} KB ({listed(later)})")
        assert first[0][0] == "/checkpoint"
        assert sum(size for _, size in first) <= FIRST_LOAD_GOAL, first
        # the bundle is fetched once the page is usable, never on its first load
        assert [p for p, _ in later if p == "/api/v1/trust/bundle"], later
        assert not [p for p, _ in first if p == "/api/v1/trust/bundle"], first
        # no camera here: no decoder is ever downloaded
        assert decoders_in(first + later) == []
        # and the page is usable: a pasted code is checked online
        page.fill("#manual-code", code)
        page.press("#manual-code", "Enter")
        seen = result_of(page)
        assert (seen["valid"], seen["status"]) == ("true", "green")
        assert page.inner_text("#result-online") == "Checked online"
    finally:
        context.close()


def test_the_camera_brings_the_webassembly_decoder_and_reads(playwright, site, tmp_path):
    """Headless Linux Chromium has no BarcodeDetector: starting the camera loads zxing-cpp
    (script and WebAssembly), which reads the code; jsQR, the last fallback, is not fetched."""
    code = site.code(site.enroll("green"))
    browser = launch(playwright, FAKE_CAMERA_ARGS +
                     [f"--use-file-for-fake-video-capture={qr_video(code, tmp_path)}"])
    try:
        context, page = fresh_signed_in_page(browser, site, permissions=["camera"])
        meter = Meter(page)
        page.goto(f"{site.url}/checkpoint")
        seen = result_of(page)
        assert (seen["valid"], seen["status"]) == ("true", "green")
        assert page.get_attribute("#video", "data-read-by") == "zxing"
        page.wait_for_load_state("networkidle")
        everything = meter.first_load() + meter.later()
        wasm = [(p, s) for p, s in everything if p.endswith(DECODERS[:2])]
        print(f"\n/checkpoint with the camera on: {kb(everything):.1f} KB in all "
              f"({kb(meter.first_load()):.1f} KB sent before the load event), of which "
              f"the zxing decoder {kb(wasm):.1f} KB ({listed(wasm)})")
        assert sorted(p.rsplit("/", 1)[-1] for p, _ in wasm) == ["zxing-reader.js",
                                                                  "zxing_reader.wasm"]
        assert not [p for p, _ in everything if p.endswith("/vendor/jsQR.min.js")]
    finally:
        browser.close()
