"""Browser tests: the app under a real HTTP server, driven by Debian's Chromium through Playwright.

No browser is downloaded (``playwright install`` is never run): Playwright launches
``/usr/bin/chromium`` (``HEALTHCODE_CHROMIUM`` overrides it). Without it the tests skip with a
message saying so, except under ``CI=true``, where that is a failure. Screenshots of every page
and language go to ``tests/artifacts/screenshots/`` (git-ignored).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from healthcode import create_app
from tests.support import REPO, free_port

CHROMIUM = os.environ.get("HEALTHCODE_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = REPO / "tests" / "artifacts" / "screenshots"
#: a phone: 360 CSS px wide, as the pages are designed for; twice the pixels, as phones have
PHONE = {"viewport": {"width": 360, "height": 780}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True}
LAUNCH_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run"]
FAKE_CAMERA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]

DOCUMENTS = {
    "green": {"name": "陳大文", "document": {"type": "travel_permit", "number": "H1234567",
                                             "region": "MO"}, "status": "green"},
    "red": {"name": "Chan Siu Ming", "document": {"type": "id_card", "number": "1234567(8)",
                                                  "region": "MO"},
            "status": "red", "reason": "positive_test"},
}


def pytest_collection_modifyitems(config, items):
    """Browser tests last: they are the slowest (a minute or more), so every quick failure
    shows first."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


def _missing(what: str):
    message = f"{what}: the browser tests need Debian's chromium (apt-get install chromium " \
              f"ffmpeg) and the playwright package (pip install playwright; no browser download)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def playwright():
    if not Path(CHROMIUM).exists():
        _missing(f"{CHROMIUM} not found")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed")
    with sync_playwright() as runner:
        yield runner


def launch(playwright, extra_args=()):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=LAUNCH_ARGS + list(extra_args))


@pytest.fixture(scope="session")
def browser(playwright):
    browser = launch(playwright)
    yield browser
    browser.close()


@pytest.fixture
def context_for(browser):
    """New phone-sized browser contexts (a fresh profile each: cookies, localStorage)."""
    made = []

    def make(locale: str = "en-US", browser_=None, **options):
        context = (browser_ or browser).new_context(locale=locale, **PHONE, **options)
        made.append(context)
        return context

    yield make
    for context in made:
        context.close()


@pytest.fixture
def page(context_for):
    return context_for().new_page()


def wait_until(page, expression: str, seconds: float = 30.0) -> None:
    """Wait until ``expression`` (JavaScript, a promise is awaited) is truthy in the page.

    Polled from here with ``page.evaluate``: Playwright's ``wait_for_function`` compiles its
    string in the page, which the pages' Content-Security-Policy (no eval) refuses."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if page.evaluate(expression):
                return
        except Exception:  # noqa: BLE001 - a navigation in between: ask the new page
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {expression}")
        page.wait_for_timeout(100)


def screenshot(page, name: str, full_page: bool = True) -> Path:
    """Save a screenshot as a test artifact (``full_page=False``: the screen as a person sees
    it, e.g. a full-screen result)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


# -- the service under a real server --------------------------------------------------------------

class LiveSite:
    """The app served over HTTP on a free loopback port, plus the API calls tests make on it."""

    def __init__(self, app):
        from werkzeug.serving import make_server

        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = make_server("127.0.0.1", self.port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.api = app.test_client()

    def close(self):
        self.server.shutdown()
        self.thread.join(10)

    @property
    def store(self):
        return self.app.extensions["healthcode.store"]

    def token(self, role: str, subject: str | None = None) -> str:
        return self.store.create_credential(role, subject=subject, label=f"browser {role}")[1]

    def bearer(self, role: str, subject: str | None = None) -> dict:
        return {"Authorization": f"Bearer {self.token(role, subject)}"}

    def enroll(self, kind: str) -> str:
        response = self.api.post("/api/v1/residents", json=DOCUMENTS[kind],
                                 headers=self.bearer("authority"))
        assert response.status_code == 201, response.get_json()
        return response.get_json()["id"]

    def link(self, sid: str) -> str:
        response = self.api.post(f"/api/v1/residents/{sid}/links",
                                 headers=self.bearer("authority"))
        assert response.status_code == 201, response.get_json()
        return self.url + response.get_json()["url"]

    def code(self, sid: str) -> str:
        response = self.api.get(f"/api/v1/residents/{sid}/code",
                                headers=self.bearer("authority"))
        return response.get_json()["code"]

    def set_status(self, sid: str, status: str, reason: str | None = None) -> None:
        body = {"status": status, **({"reason": reason} if reason else {})}
        response = self.api.put(f"/api/v1/residents/{sid}/status", json=body,
                                headers=self.bearer("authority"))
        assert response.status_code == 200, response.get_json()

    def verify(self, code: str) -> dict:
        response = self.api.post("/api/v1/verify", json={"code": code},
                                 headers=self.bearer("checkpoint"))
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def expired_code(self, sid: str) -> str:
        """A genuine code of ours, signed an hour ago: expired well beyond the clock skew."""
        from healthcode import tokens

        ring = self.app.extensions["healthcode.keys"]
        issued = datetime.fromtimestamp(datetime.now(timezone.utc).timestamp() - 3600,
                                        timezone.utc)
        return tokens.sign(ring, issuer=self.app.config["ISSUER"], subject_id=sid,
                           status="green", status_version=1, masked_name="陳*文",
                           issued_at=issued, ttl=300)


def start_site(tmp_path_factory, redis_server, **config) -> LiveSite:
    """A live site with its own data dir (keys) on the session's Redis; close it when done."""
    app = create_app({
        "TESTING": True,
        "REDIS_URL": redis_server.url,
        "DATA_DIR": str(tmp_path_factory.mktemp("browser-data")),
        "ISSUER": "HC-TEST",
        "SUBJECT_SECRET": "browser-subject-secret-0123456789",
        "SECRET_KEY": "browser-session-secret-0123456789",
        "CREDENTIAL_CACHE_SECONDS": 0,
        **config,
    })
    return LiveSite(app)


@pytest.fixture(scope="session")
def short_site(tmp_path_factory, redis_server):
    """Codes live 12 s, so a test can watch the page renew one."""
    site = start_site(tmp_path_factory, redis_server, CODE_TTL=12)
    yield site
    site.close()


@pytest.fixture(scope="session")
def site(tmp_path_factory, redis_server):
    site = start_site(tmp_path_factory, redis_server)
    yield site
    site.close()


@pytest.fixture(autouse=True)
def clean_redis(redis_client):
    """Every browser test starts from an empty store (the root conftest flushes it)."""


# -- signing in, as a person does -----------------------------------------------------------------

def sign_in_with_link(page, link_url: str) -> None:
    page.goto(link_url)
    page.click("#continue")
    page.wait_for_selector("#code")
    page.wait_for_load_state()  # the page's scripts have bound their buttons


def sign_in_with_token(page, site: LiveSite, token: str, where: str) -> None:
    page.goto(f"{site.url}/{where}")
    page.fill("#token", token)
    page.click("form.stack button[type=submit]")
    page.wait_for_url(f"**/{where}")
    page.wait_for_load_state()


# -- a fake camera --------------------------------------------------------------------------------

def qr_video(text: str, folder: Path) -> Path:
    """A Y4M video of a QR code, for Chromium's fake camera (--use-file-for-fake-video-capture)."""
    from healthcode import qr

    if not shutil.which("ffmpeg"):
        _missing("ffmpeg not found")
    image = folder / "qr.png"
    image.write_bytes(qr.render(text, "png"))
    video = folder / "qr.y4m"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-loop", "1", "-i", str(image), "-t", "1",
         "-r", "5", "-vf", "scale=440:440:flags=neighbor,pad=640:480:100:20:white,"
                           "format=yuv420p",
         "-f", "yuv4mpegpipe", str(video)],
        check=True, timeout=60)
    return video
