"""The pages for people: what they show, the headers that keep them safe, their languages, and
the message catalogs behind every word."""
import base64
import hashlib
import json
import re

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from healthcode import i18n, qr
from tests.support import REPO, decode_qr
from tests.views.test_sessions import sign_in

PACKAGE = REPO / "healthcode"
TEMPLATES = PACKAGE / "templates"
TRANSLATIONS = PACKAGE / "translations"
LOCALES = ("zh_Hant", "zh_Hans", "en", "pt")


@pytest.fixture
def resident_client(client, creds, enrolled):
    sign_in(client, creds.token("resident", enrolled["id"]))
    return client


@pytest.fixture
def checkpoint_client(client, creds):
    sign_in(client, creds.token("checkpoint"), page="checkpoint")
    return client


def page_data(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="hc-page">(.*?)</script>', html, re.S)
    return json.loads(match.group(1))


def title_of(html: str) -> str:
    return re.search(r"<title>(.*?)</title>", html, re.S).group(1)


# -- the resident page ----------------------------------------------------------------------------

def test_the_resident_page_shows_the_current_code(app, resident_client, enrolled):
    html = resident_client.get("/me?lang=en").get_data(as_text=True)
    assert 'class="code status-green"' in html and "Green code" in html
    assert '<span id="masked-name">陳*文</span>' in html
    data = page_data(html)
    code = data["code"]
    assert data["code_url"] == "/me/code" and data["events_url"] == "/me/events"
    assert code["status"] == "green" and code["expires_ms"] > code["now_ms"]
    assert code["status_version"] == 1 and code["advice"] is None  # green: nothing to explain
    # the QR is on the page once, in the <img>, as the current token's compact PNG
    with app.app_context():
        from healthcode import residents
        token = residents.current_code(enrolled["id"]).token
    assert "image" not in code
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 1 and html.count("data:image") == 1
    png = base64.b64decode(images[0])
    assert decode_qr(png, upscale=8) == token
    assert len(png) < 2000, "one pixel per module: a few hundred bytes"


def test_the_code_endpoint_refreshes_with_image_and_times(resident_client, enrolled):
    body = resident_client.get("/me/code").get_json()
    assert set(body) == {"status", "status_version", "masked_name", "issued_at", "expires_at",
                         "issued_ms", "expires_ms", "now_ms", "advice", "image"}
    assert body["image"].startswith("data:image/png;base64,")
    assert resident_client.get("/me/code").headers["Cache-Control"] == "no-store"


def test_only_a_resident_has_a_code_page(client, checkpoint_client):
    assert checkpoint_client.get("/me/code").status_code == 403
    html = checkpoint_client.get("/me?lang=en").get_data(as_text=True)
    assert "This access code is not for this page." in html and 'id="code"' not in html
    anonymous = client.application.test_client()
    assert anonymous.get("/me/code").status_code == 401


def test_no_personal_data_in_titles_or_urls(resident_client, enrolled):
    html = resident_client.get("/me").get_data(as_text=True)
    assert "陳" not in title_of(html) and enrolled["id"] not in title_of(html)
    assert enrolled["id"] not in html  # only inside the QR image, which is base64 of a picture
    for url in re.findall(r'(?:href|src|action)="([^"]+)"', html):
        if url.startswith("data:"):
            continue
        assert enrolled["id"] not in url and "陳" not in url


def test_a_status_change_shows_on_the_next_fetch(resident_client, creds, enrolled):
    resident_client.put(f"/api/v1/residents/{enrolled['id']}/status", headers=creds.authority,
                        json={"status": "red", "reason": "close_contact"})
    assert resident_client.get("/me/code").get_json()["status"] == "red"
    html = resident_client.get("/me?lang=zh-Hant").get_data(as_text=True)
    assert "紅碼" in html and "status-red" in html


# -- the scanner page -----------------------------------------------------------------------------

def asset_src(html: str, name: str) -> str:
    """The content-hashed URL a page loads a static script from (``/assets/<digest>/<name>``)."""
    match = re.search(r'<script src="(/assets/[0-9a-f]{12}/' + re.escape(name) + r')" defer>',
                      html)
    assert match, f"{name} is not loaded under a content-hashed name"
    return match.group(1)


def later_src(html: str, name: str) -> str:
    """The content-hashed URL of a script the scanner inserts when needed (page.scripts)."""
    found = [url for url in page_data(html)["scripts"].values()
             if re.fullmatch(r"/assets/[0-9a-f]{12}/" + re.escape(name), url)]
    assert found, f"{name} is not named under a content-hashed name in the page's data"
    return found[0]


def test_the_scanner_page_loads_the_vendored_decoder(checkpoint_client):
    html = checkpoint_client.get("/checkpoint").get_data(as_text=True)
    src = later_src(html, "vendor/jsQR.min.js")
    data = page_data(html)
    assert {k: data[k] for k in ("verify_url", "lookup_url", "keep")} == \
        {"verify_url": "/api/v1/verify", "lookup_url": "/api/v1/lookup", "keep": 5}
    assert checkpoint_client.get(src).status_code == 200


def test_the_scanners_first_load_has_one_script_of_its_own(checkpoint_client):
    """Issue 13.11: the decoders and the offline verifier are not loaded with the page; it
    inserts them when needed, from the URLs in its data (tests/browser/test_scanner_weight.py
    measures the bytes)."""
    html = checkpoint_client.get("/checkpoint").get_data(as_text=True)
    loaded = re.findall(r'<script src="/assets/[0-9a-f]{12}/([^"]+)"', html)
    assert loaded == ["js/prefs.js", "js/checkpoint.js"]
    assert sorted(page_data(html)["scripts"]) == ["cbor", "jsqr", "offline", "zxing"]


def test_the_scanner_page_carries_what_offline_checks_need(app, checkpoint_client):
    response = checkpoint_client.get("/checkpoint")
    html = response.get_data(as_text=True)
    for script in ("vendor/cbor-x.min.js", "js/offline-verify.js"):
        assert checkpoint_client.get(later_src(html, script)).status_code == 200
    data = page_data(html)
    assert data["bundle_url"] == "/api/v1/trust/bundle"
    assert data["issuer"] == "HC-TEST" and data["clock_skew"] == app.config["CLOCK_SKEW"]
    # the bundle is trusted only under a key delivered with the page: our public keys, no more
    kids = {k["kid"] for k in data["trust_keys"]["keys"]}
    assert kids == {app.extensions["healthcode.keys"].active.kid}
    assert all("d" not in key for key in data["trust_keys"]["keys"])
    assert response.headers["X-Healthcode-Page"] == "checkpoint"


def test_the_service_worker_is_served_from_the_root_for_the_scanner(checkpoint_client):
    response = checkpoint_client.get("/checkpoint-sw.js")
    assert response.status_code == 200 and response.mimetype == "text/javascript"
    assert response.headers["Cache-Control"] == "no-cache"
    body = response.get_data(as_text=True)
    page = checkpoint_client.get("/checkpoint").get_data(as_text=True)
    assert f'"{asset_src(page, "js/checkpoint.js")}"' in body
    for asset in ("js/offline-verify.js", "vendor/cbor-x.min.js", "vendor/jsQR.min.js",
                  "vendor/zxing-reader.js"):
        # the worker keeps exactly the content-hashed URLs the page loads when it needs them
        assert f'"{later_src(page, asset)}"' in body
    # and the decoder's WebAssembly, which the page fetches from the URL it is given
    assert json.dumps(page_data(page)["zxing_wasm_url"]) in body
    assert '"/api/v1/trust/bundle"' in body and "hc-checkpoint-assets-" in body


def test_the_scanner_is_told_where_its_webassembly_decoder_is(checkpoint_client):
    """Content-hashed like every asset, so the page cannot guess the URL: it comes in the
    page's data, and the app serves it itself (no CDN), as WebAssembly (streaming compile
    needs application/wasm), cacheable for good."""
    url = page_data(checkpoint_client.get("/checkpoint").get_data(as_text=True))[
        "zxing_wasm_url"]
    assert re.fullmatch(r"/assets/[0-9a-f]{12}/vendor/zxing_reader\.wasm", url)
    response = checkpoint_client.get(url)
    assert response.status_code == 200 and response.mimetype == "application/wasm"
    assert response.get_data()[:4] == b"\0asm"
    assert "immutable" in response.headers["Cache-Control"]


def test_a_signin_page_is_not_marked_for_keeping(client):
    """Marked as the sign-in page instead: the scanner's worker, seeing it answer /checkpoint,
    drops its copy of the signed-in page (whose CSRF token belonged to a session now over)."""
    response = client.get("/checkpoint")
    assert response.headers["X-Healthcode-Page"] == "signin"


def test_signing_out_of_the_scanner_answers_with_the_marked_signin_page(checkpoint_client):
    csrf = re.search(r'name="csrf-token" content="([^"]+)"',
                     checkpoint_client.get("/checkpoint").get_data(as_text=True)).group(1)
    response = checkpoint_client.post("/signout", data={"csrf_token": csrf,
                                                        "next": "checkpoint"})
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/checkpoint?signed_out=1")
    after = checkpoint_client.get(response.headers["Location"])
    assert after.status_code == 200 and after.headers["X-Healthcode-Page"] == "signin"


@pytest.mark.parametrize("name, licence, licence_words, licence_files", [
    ("jsQR.min.js", "Apache-2.0", "Apache License", ["jsQR.LICENSE"]),
    ("cbor-x.min.js", "MIT", "MIT License", ["cbor-x.LICENSE"]),
    # zxing-wasm's own code is MIT; the zxing-cpp inside its build is Apache-2.0
    ("zxing-reader.js", "MIT", "MIT License", ["zxing-wasm.LICENSE"]),
    ("zxing_reader.wasm", "Apache-2.0", "Apache License", ["zxing-cpp.LICENSE"]),
])
def test_the_vendored_scripts_are_the_pinned_releases(name, licence, licence_words,
                                                      licence_files):
    readme = (PACKAGE / "static" / "vendor" / "README.md").read_text()
    digest = hashlib.sha256((PACKAGE / "static" / "vendor" / name).read_bytes()).hexdigest()
    row = next(line for line in readme.splitlines() if line.startswith(f"| `{name}`"))
    assert digest in row and licence in row
    for licence_file in licence_files:
        assert f"`{licence_file}`" in row
        assert licence_words in (PACKAGE / "static" / "vendor" / licence_file).read_text()


def test_the_scanner_form_fields_have_no_names(checkpoint_client):
    """Fields without a name are never submitted: should the script fail, a document number
    cannot end up in a request, let alone a URL."""
    html = checkpoint_client.get("/checkpoint").get_data(as_text=True)
    lookup_form = re.search(r'<form id="lookup-form".*?</form>', html, re.S).group(0)
    assert 'method="post"' in lookup_form and " name=" not in lookup_form


# -- safe pages -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/me", "/checkpoint", "/api/v1/schemes", "/healthz"])
def test_every_response_has_a_csp_without_inline_scripts(client, path):
    policy = client.get(path).headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert "unsafe" not in policy
    assert "data:" in directives["img-src"] and "blob:" in directives["img-src"]
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"


def test_only_the_scanner_may_compile_webassembly(checkpoint_client):
    """The scanner's camera decoder is WebAssembly: its page alone adds 'wasm-unsafe-eval',
    which allows compiling wasm and never eval or new Function ('unsafe-eval')."""
    policy = checkpoint_client.get("/checkpoint").headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self' 'wasm-unsafe-eval'"
    assert "'unsafe-eval'" not in policy and "unsafe-inline" not in policy
    assert policy.replace(" 'wasm-unsafe-eval'", "") == \
        checkpoint_client.application.test_client().get("/me").headers[
            "Content-Security-Policy"]


def test_pages_have_no_inline_script_or_style(resident_client, creds):
    pages = [resident_client.get("/me").get_data(as_text=True)]
    other = resident_client.application.test_client()
    sign_in(other, creds.token("checkpoint"), page="checkpoint")
    pages.append(other.get("/checkpoint").get_data(as_text=True))
    pages.append(other.application.test_client().get("/me").get_data(as_text=True))
    for html in pages:
        for attrs, body in re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S):
            assert re.search(r'src="/(static|assets/[0-9a-f]+)/', attrs) or 'type="application/json"' in attrs
            if "src=" in attrs:
                assert not body.strip()
        assert not re.search(r"\son[a-z]+=", html), "inline event handler"
        assert not re.search(r"\sstyle=", html) and "<style" not in html


def test_pages_are_never_cached(resident_client):
    assert resident_client.get("/me").headers["Cache-Control"] == "no-store"


def test_a_cross_site_arrival_reloads_to_send_the_strict_cookie(client):
    response = client.get("/me", headers={"Sec-Fetch-Site": "cross-site"})
    html = response.get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="0">' in html and "<form" not in html
    assert "<form" in client.get("/me", headers={"Sec-Fetch-Site": "same-origin"}).get_data(
        as_text=True)


def test_a_stale_form_is_explained_in_the_pages_language(client, creds, enrolled):
    client.get("/me?lang=zh-Hant")
    response = client.post("/signin", data={"token": "x", "next": "me"})
    assert response.status_code == 403
    assert "表格已失效" in response.get_data(as_text=True)


def test_an_unknown_link_is_explained_in_words(client):
    response = client.get("/me/login/nothing-here?lang=pt")
    assert response.status_code == 410
    assert "Esta ligação expirou ou já foi usada" in response.get_data(as_text=True)


# -- languages ------------------------------------------------------------------------------------

@pytest.mark.parametrize("accept, tag, word", [
    ("zh-TW,zh;q=0.9", "zh-Hant", "健康碼"),
    ("zh-MO", "zh-Hant", "健康碼"),
    ("zh-HK,en;q=0.5", "zh-Hant", "健康碼"),
    ("zh-CN,zh;q=0.9", "zh-Hans", "健康码"),
    ("zh-Hans-SG", "zh-Hans", "健康码"),
    ("zh", "zh-Hant", "健康碼"),
    ("pt-PT,pt;q=0.9", "pt", "Código de saúde"),
    ("pt-BR", "pt", "Código de saúde"),
    ("en-GB,en;q=0.8", "en", "Health code"),
    ("fr-FR,de;q=0.9", "en", "Health code"),
    ("fr-FR,pt;q=0.5,zh-TW;q=0.3", "pt", "Código de saúde"),
    ("en;q=0.2,zh-CN;q=0.9", "zh-Hans", "健康码"),
])
def test_the_language_follows_the_browser(client, accept, tag, word):
    html = client.get("/me", headers={"Accept-Language": accept}).get_data(as_text=True)
    assert f'<html lang="{tag}">' in html
    assert title_of(html) == word


def test_lang_overrides_the_browser_and_is_remembered(client):
    html = client.get("/me?lang=pt", headers={"Accept-Language": "zh-TW"}).get_data(as_text=True)
    assert '<html lang="pt">' in html
    later = client.get("/me", headers={"Accept-Language": "zh-TW"}).get_data(as_text=True)
    assert '<html lang="pt">' in later
    ignored = client.get("/me?lang=klingon").get_data(as_text=True)
    assert '<html lang="pt">' in ignored


def test_the_switcher_names_every_language_in_itself(client):
    html = client.get("/me?lang=en").get_data(as_text=True)
    for tag, name in (("zh-Hant", "繁體中文"), ("zh-Hans", "简体中文"), ("en", "English"),
                      ("pt", "Português")):
        assert f'href="?lang={tag}"' in html and name in html
    assert 'aria-current="true">English<' in html


@pytest.mark.parametrize("tag, expected", [
    ("zh-Hant", "zh_Hant"), ("zh_Hant", "zh_Hant"), ("ZH-hant-mo", "zh_Hant"),
    ("zh-Hans", "zh_Hans"), ("zh-cn", "zh_Hans"), ("pt-MO", "pt"), ("en-US", "en"),
    ("fr", None), ("", None), (None, None), ("x" * 30, None),
])
def test_language_tags_map_to_catalogs(tag, expected):
    assert i18n.parse_tag(tag) == expected


@pytest.mark.parametrize("lang, words", [
    ("en", ["Valid until", "Now", "Sign out", "Green code"]),
    ("zh-Hant", ["有效至", "現在時間", "登出", "綠碼"]),
    ("zh-Hans", ["有效至", "现在时间", "退出登录", "绿码"]),
    ("pt", ["Válido até", "Agora", "Sair", "Código verde"]),
])
def test_the_resident_page_speaks_each_language(resident_client, lang, words):
    html = resident_client.get(f"/me?lang={lang}").get_data(as_text=True)
    for word in words:
        assert word in html


def test_the_scripts_get_their_words_from_the_catalog(checkpoint_client):
    html = checkpoint_client.get("/checkpoint?lang=zh-Hant").get_data(as_text=True)
    match = re.search(r'<script type="application/json" id="hc-text">(.*?)</script>', html, re.S)
    text = json.loads(match.group(1))
    assert text["reason"]["bad_signature"] == "此碼已被篡改或偽造。"
    assert text["error"]["rate_limited"] == "查詢次數太多，請等候 %(seconds)s 秒。"
    assert set(text["reason"]) >= {"valid", "malformed", "bad_signature", "unknown_key",
                                   "untrusted_issuer", "expired", "not_yet_valid",
                                   "superseded", "revoked"}


def test_every_contract_reason_has_words():
    from healthcode.errors import CODE_REASONS
    assert CODE_REASONS <= set(i18n.REASON_TEXT)


# -- the catalogs ---------------------------------------------------------------------------------

def extracted_messages() -> dict:
    """Every message id in the sources, as pybabel extracts them (see babel.cfg)."""
    method_map = [("healthcode/**.py", "python"), ("healthcode/templates/**.html", "jinja2")]
    keywords = {**DEFAULT_KEYWORDS, "_l": None}
    found = {}
    for filename, _lineno, message, _comments, _context in extract_from_dir(
            str(REPO), method_map=method_map, keywords=keywords):
        if filename.startswith(("healthcode/", "healthcode\\")):
            found[message if isinstance(message, str) else message[0]] = filename
    return found


def test_the_sources_have_messages_to_translate():
    messages = extracted_messages()
    assert len(messages) > 50
    assert "Valid until" in messages and "The code has been altered or forged." in messages


@pytest.mark.parametrize("locale", LOCALES)
def test_every_message_is_translated_in_every_catalog(locale):
    with open(TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po", "rb") as fh:
        catalog = read_po(fh)
    translated = {m.id: m for m in catalog if m.id}
    missing = sorted(set(extracted_messages()) - set(translated))
    assert not missing, f"{locale} lacks: {missing}"
    for message in translated.values():
        assert message.string, f"{locale}: {message.id!r} is not translated"
        assert not message.fuzzy, f"{locale}: {message.id!r} is marked fuzzy"
        placeholders = re.findall(r"%\(\w+\)s", message.id)
        assert sorted(placeholders) == sorted(re.findall(r"%\(\w+\)s", message.string)), \
            f"{locale}: {message.id!r} loses a placeholder"


@pytest.mark.parametrize("locale", LOCALES)
def test_every_compiled_catalog_matches_its_source(locale):
    """A .po edited without `pybabel compile` would leave the pages on old words."""
    folder = TRANSLATIONS / locale / "LC_MESSAGES"
    with open(folder / "messages.po", "rb") as fh:
        source = {m.id: m.string for m in read_po(fh) if m.id}
    with open(folder / "messages.mo", "rb") as fh:
        compiled = {m.id: m.string for m in read_mo(fh) if m.id}
    assert compiled == source


def test_templates_hold_no_words_of_their_own():
    """Every word a person reads comes from a catalog: strip the template expressions and the
    markup, and no letters may be left, in text or in the attributes people read."""
    for path in TEMPLATES.glob("*.html"):
        source = path.read_text()
        source = re.sub(r"\{#.*?#\}", "", source, flags=re.S)
        source = re.sub(r"\{%.*?%\}", "", source, flags=re.S)
        source = re.sub(r"\{\{.*?\}\}", "", source, flags=re.S)
        for attribute in re.findall(r'(?:alt|title|aria-label|placeholder)="([^"]*)"', source):
            assert not re.search(r"[^\W\d_]", attribute), f"{path.name}: {attribute!r}"
        text = re.sub(r"<[^>]*>", "", source)
        leftover = re.findall(r"[^\W\d_]+", text)
        assert not leftover, f"{path.name} has words outside the catalog: {leftover}"


def test_the_catalog_template_is_current():
    with open(TRANSLATIONS / "messages.pot", "rb") as fh:
        template = {m.id for m in read_po(fh) if m.id}
    assert template == set(extracted_messages())


def test_the_large_text_switch_is_on_every_page(client):
    html = client.get("/me").get_data(as_text=True)
    assert '<button type="button" id="large-text" class="toggle" aria-pressed="false">' in html
    css = (PACKAGE / "static" / "css" / "site.css").read_text()
    size = re.search(r"html\.large-text \{ font-size: (\d+)px", css)
    assert size and int(size.group(1)) >= 24


def test_every_template_and_catalog_ships_with_the_package():
    """setup.cfg's package_data globs are flat: templates/*, translations/*/LC_MESSAGES/*."""
    assert not [p for p in TEMPLATES.rglob("*") if p.parent != TEMPLATES]
    cfg = (REPO / "setup.cfg").read_text()
    assert "templates/*" in cfg and "translations/*/LC_MESSAGES/*" in cfg and "static/**/*" in cfg


def test_the_default_language_is_configurable(tmp_path, redis_server, redis_client):
    from healthcode import create_app
    app = create_app({"TESTING": True, "REDIS_URL": redis_server.url, "DATA_DIR": str(tmp_path),
                      "SUBJECT_SECRET": "s" * 20, "DEFAULT_LANGUAGE": "zh_Hant",
                      "SECRET_KEY": "test-session-secret-0123"})
    html = app.test_client().get("/me").get_data(as_text=True)  # no Accept-Language at all
    assert '<html lang="zh-Hant">' in html


def test_an_unknown_default_language_stops_start_up(tmp_path, redis_server):
    from healthcode import create_app
    from healthcode.errors import ConfigurationError
    with pytest.raises(ConfigurationError):
        create_app({"TESTING": True, "REDIS_URL": redis_server.url, "DATA_DIR": str(tmp_path),
                    "SUBJECT_SECRET": "s" * 20, "DEFAULT_LANGUAGE": "fr",
                    "SECRET_KEY": "test-session-secret-0123"})


def test_a_store_outage_is_a_translated_page_not_a_crash(app, client):
    import redis as redis_lib

    from tests.support import free_port
    dead = redis_lib.Redis(port=free_port(), socket_timeout=0.2, socket_connect_timeout=0.2,
                           decode_responses=True)
    app.extensions["healthcode.store"].r = dead
    app.extensions["healthcode.sessions"].r = dead
    client.set_cookie("hc_session", "some-session-this-worker-never-saw")
    response = client.get("/me?lang=zh-Hans")
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert "服务繁忙" in response.get_data(as_text=True)


@pytest.mark.parametrize("script", ["checkpoint.js", "me.js"])
def test_every_word_a_script_shows_is_in_the_catalogs(app, script):
    """A script reads its words from the page's JSON (i18n.client_text): a key it reads that
    the page does not carry would show "undefined" to a guard or a resident."""
    source = (PACKAGE / "static" / "js" / script).read_text()
    used = set(re.findall(r"(?<![\w.])text\.([a-z_]+)", source))
    with app.test_request_context("/?lang=pt"):
        words = i18n.client_text()
    assert used and used <= set(words), sorted(used - set(words))
