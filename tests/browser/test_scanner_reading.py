"""Reading real-looking codes through the camera (issue 13.10): rotated (30°, 45°, 90°),
perspective-skewed, blurred and low-contrast QR codes, and codes on another phone's screen
(bezel, tilt, glare), each as a fake-camera video, read at 4x CPU throttling.

Headless Chromium on Linux has no BarcodeDetector, so these measure the page's own decoder:
zxing-cpp as WebAssembly (vendor/zxing-reader.js), served by the app under the scanner page's
CSP. Every class is shown with three kinds of code a checkpoint meets: one of ours (an ES256
JWT, error correction M, as the service renders it), a SMART Health Card chunk (numeric mode,
error correction L, as SHC issuers print them) and an EU DCC (base45, error correction Q, as
the DCC guidelines recommend). A code is read when the page sends exactly its text to the
service; the time is from the camera starting to that moment. Goal: at least 95 % of the videos
read within 1 s, and every class read.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.browser.conftest import FAKE_CAMERA_ARGS, _missing, launch, sign_in_with_token
from tests.browser.offline_util import TestSigner
from tests.browser.test_scanner_page import result_of
from tests.support import conformance_dir

pytestmark = pytest.mark.browser

#: how a flat QR picture turns into what a camera sees in the field (ffmpeg filters; the
#: rotated codes are drawn smaller so their corners stay in the frame)
VARIANTS = {
    "rotated 30°": "scale=336:336:flags=neighbor,pad=480:480:72:72:white,"
                   "rotate=30*PI/180:fillcolor=white",
    "rotated 45°": "scale=336:336:flags=neighbor,pad=480:480:72:72:white,"
                   "rotate=45*PI/180:fillcolor=white",
    "rotated 90°": "scale=440:440:flags=neighbor,transpose=1",
    "perspective": "scale=400:400:flags=neighbor,pad=440:440:20:20:white,"
                   "perspective=x0=60:y0=0:x1=380:y1=40:x2=0:y2=440:x3=440:y3=400"
                   ":sense=destination",
    "blurred": "scale=440:440:flags=neighbor,gblur=sigma=2.5",
    "low contrast": "scale=440:440:flags=neighbor,eq=contrast=0.35:brightness=0.15",
    # another phone's screen: a black bezel, tilted in the hand, a lamp's glare on the glass
    "phone screen": "scale=320:320:flags=neighbor,format=gray,pad=400:400:40:40:black,"
                    "rotate=12*PI/180:fillcolor=black,"
                    "geq=lum='min(255\\,lum(X\\,Y)*0.85+140*exp(-((X-260)*(X-260)"
                    "+(Y-110)*(Y-110))/5000))'",
}
GOAL_MS = 1000
GOAL_SHARE = 0.95
#: past this a video counts as not read (bounds the test's time; the goal is GOAL_MS)
GIVE_UP_MS = 6000


def variant_video(text: str, folder, name: str, error_correction: str):
    from healthcode import qr

    if not shutil.which("ffmpeg"):
        _missing("ffmpeg not found")
    image = folder / "qr.png"
    image.write_bytes(qr.render(text, "png", error_correction))
    video = folder / "qr.y4m"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-loop", "1", "-i", str(image), "-t", "2",
         "-r", "5", "-vf", VARIANTS[name] + ",pad=640:480:(ow-iw)/2:(oh-ih)/2:white,"
                                            "format=yuv420p",
         "-f", "yuv4mpegpipe", str(video)], check=True, timeout=60)
    return video


def shc_chunk() -> str:
    """The first of the three chunks of the SHC specification's example 02 (2,199 digits)."""
    return (conformance_dir("shc") / "example-02-f-qr-code-numeric-value-0.txt").read_text() \
        .strip()


def read_by_camera(playwright, site, video, route=None,
                   give_up_ms: int = GIVE_UP_MS) -> tuple[str | None, float | None, object]:
    """Start the scanner on this fake camera at 4x CPU throttling; the text the page sent to
    the service, the milliseconds from camera start to that, and (browser, page, the decoder
    that read it). ``route``: (pattern, handler) to intercept the page's requests."""
    browser = launch(playwright, FAKE_CAMERA_ARGS + [f"--use-file-for-fake-video-capture={video}"])
    sent: list[str] = []
    context = browser.new_context(locale="en-US", viewport={"width": 360, "height": 780},
                                  permissions=["camera"])
    page = context.new_page()
    if route:
        page.route(*route)
    page.on("request", lambda r: sent.append(r.post_data_json["code"])
            if r.url.endswith("/api/v1/verify") and r.method == "POST" else None)
    page.goto(f"{site.url}/checkpoint")
    cdp = context.new_cdp_session(page)
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": 4})
    sign_in_with_token(page, site, site.token("checkpoint"), "checkpoint")
    took = page.evaluate("""(giveUp) => new Promise((resolve) => {
        const since = () => {
            const on = performance.getEntriesByName('hc-camera-on')[0];
            const read = performance.getEntriesByName('hc-code-read')[0];
            if (on && read) return resolve(read.startTime - on.startTime);
            if (on && performance.now() - on.startTime > giveUp) return resolve(null);
            setTimeout(since, 50);
        };
        since();
    })""", give_up_ms)
    decoder = page.get_attribute("#video", "data-read-by")
    return (sent[0] if sent else None), took, (browser, page, decoder)


def test_distorted_codes_are_read_by_the_camera_within_a_second(playwright, site, tmp_path,
                                                                capsys):
    signer = TestSigner()
    codes = {"native": (site.code(site.enroll("green")), "M"),
             "SHC chunk": (shc_chunk(), "L"),
             "EU DCC": (signer.dcc(), "Q")}
    tally: dict[str, list[bool]] = {name: [] for name in VARIANTS}  # read within GOAL_MS
    read: dict[str, list[bool]] = {name: [] for name in VARIANTS}  # read at all
    lines = []
    for name in VARIANTS:
        for kind, (code, level) in codes.items():
            folder = tmp_path / f"{len(lines)}"
            folder.mkdir()
            text, took, (browser, page, decoder) = read_by_camera(
                playwright, site, variant_video(code, folder, name, level))
            try:
                if text is not None:
                    assert text == code, f"{name}, {kind}: misread as {text[:40]!r}"
                if kind == "native" and text is not None:
                    # ours is judged too: read right means checked right
                    seen = result_of(page)
                    assert (seen["valid"], seen["status"]) == ("true", "green")
            finally:
                browser.close()
            if text is not None:
                assert decoder == "zxing", f"{name}, {kind}: read by {decoder}, not zxing-cpp"
            read[name].append(text is not None)
            tally[name].append(took is not None and took <= GOAL_MS)
            lines.append(f"  {name:13} {kind:9} " +
                         (f"{took:5.0f} ms" if took is not None else "not read"))
    within = sum(sum(t) for t in tally.values())
    total = sum(len(t) for t in tally.values())
    with capsys.disabled():
        print("\ncamera reading at 4x CPU throttling (zxing-cpp wasm), camera start to read:")
        print("\n".join(lines))
        for name, reads in tally.items():
            print(f"  {name:13} read within {GOAL_MS} ms: {sum(reads)}/{len(reads)}")
        print(f"  all           read within {GOAL_MS} ms: {within}/{total} "
              f"({within / total:.0%}, goal {GOAL_SHARE:.0%})")
    assert all(all(reads) for reads in read.values()), f"not read at all: {read}"
    assert within / total >= GOAL_SHARE, f"{within}/{total} read within {GOAL_MS} ms"


def test_jsqr_reads_when_the_webassembly_decoder_cannot_load(playwright, site, tmp_path):
    """A device without the .wasm (a failed download, a proxy that strips it) still scans:
    the page falls back to jsQR, which reads a flat code."""
    code = site.code(site.enroll("green"))
    video = variant_video(code, tmp_path, "rotated 90°", "M")
    text, took, (browser, page, decoder) = read_by_camera(
        playwright, site, video, route=("**/zxing_reader.wasm", lambda route: route.abort()))
    try:
        assert (text, decoder) == (code, "jsqr")
        seen = result_of(page)
        assert (seen["valid"], seen["status"]) == ("true", "green")
        assert page.get_attribute("#video", "data-decoder") == "jsqr"
    finally:
        browser.close()


def test_jsqr_reads_while_a_slow_webassembly_decoder_arrives_then_zxing_takes_over(
        playwright, site, tmp_path):
    """On a slow link the 0.4 MB WebAssembly takes seconds: after 3 s jsQR (46 KB) reads,
    and zxing takes over once it is there."""
    from tests.browser.conftest import wait_until

    code = site.code(site.enroll("green"))
    video = variant_video(code, tmp_path, "rotated 90°", "M")
    held = []  # the .wasm request, answered only after jsQR has read
    hold = ("**/zxing_reader.wasm", lambda route: held.append(route))
    # jsQR starts after 3 s and loads at 4x throttling on a shared machine: time for both
    text, took, (browser, page, decoder) = read_by_camera(playwright, site, video, route=hold,
                                                          give_up_ms=15_000)
    try:
        assert (text, decoder) == (code, "jsqr")
        # zxing's 3 s run from when it was asked for, as the camera came on (a little before
        # the page's "camera on" mark): jsQR did not come at once
        assert took is not None and took >= 2500, "jsQR came before zxing had its 3 s"
        assert held, "the WebAssembly was never asked for"
        held[0].continue_()
        wait_until(page, "document.getElementById('video').dataset.decoder === 'zxing'", 15)
    finally:
        browser.close()
