"""Reading real-looking codes through the camera (issue 13.10): rotated, perspective-skewed,
blurred and low-contrast QR codes, each as a fake-camera video, read at 4x CPU throttling.

Headless Chromium on Linux has no BarcodeDetector, so these measure the jsQR fallback. Each
variant must be read and judged correctly; the time from the camera starting to the result is
printed per variant (issue goal: within 1 s each): on this shared machine it is a report, not
an assertion, as BRIEF says of performance targets.
"""
from __future__ import annotations

import subprocess

import pytest

from tests.browser.conftest import FAKE_CAMERA_ARGS, _missing, launch, sign_in_with_token
from tests.browser.test_scanner_page import result_of

pytestmark = pytest.mark.browser

#: ffmpeg filters that turn the flat QR picture into what a camera sees in the field
VARIANTS = {
    "rotated 30°": "scale=300:300:flags=neighbor,pad=440:440:70:70:white,"
                   "rotate=30*PI/180:fillcolor=white",
    "rotated 45°": "scale=300:300:flags=neighbor,pad=440:440:70:70:white,"
                   "rotate=45*PI/180:fillcolor=white",
    "rotated 90°": "scale=440:440:flags=neighbor,transpose=1",
    "perspective": "scale=400:400:flags=neighbor,pad=440:440:20:20:white,"
                   "perspective=x0=60:y0=0:x1=380:y1=40:x2=0:y2=440:x3=440:y3=400"
                   ":sense=destination",
    "blurred": "scale=440:440:flags=neighbor,gblur=sigma=2.5",
    "low contrast": "scale=440:440:flags=neighbor,eq=contrast=0.35:brightness=0.15",
}
TIMES: dict[str, float] = {}


def variant_video(text: str, folder, name: str):
    import shutil

    from healthcode import qr

    if not shutil.which("ffmpeg"):
        _missing("ffmpeg not found")
    image = folder / "qr.png"
    image.write_bytes(qr.render(text, "png"))
    video = folder / "qr.y4m"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-loop", "1", "-i", str(image), "-t", "2",
         "-r", "5", "-vf", VARIANTS[name] + ",pad=640:480:(ow-iw)/2:(oh-ih)/2:white,"
                                            "format=yuv420p",
         "-f", "yuv4mpegpipe", str(video)], check=True, timeout=60)
    return video


#: variants the jsQR fallback does not read today, and why (strict: a fix shows as XPASS)
CANNOT_READ = {
    "perspective": "jsQR finds no code in a perspective-skewed picture; a stronger decoder "
                   "(zxing-cpp as WebAssembly, issue 13.10) is not vendored yet",
}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(reason=CANNOT_READ[n], strict=True))
    if n in CANNOT_READ else n for n in VARIANTS])
def test_a_distorted_code_is_read_by_the_camera(playwright, site, tmp_path, name, capsys):
    code = site.code(site.enroll("green"))
    browser = launch(playwright, FAKE_CAMERA_ARGS + [
        f"--use-file-for-fake-video-capture={variant_video(code, tmp_path, name)}"])
    try:
        context = browser.new_context(locale="en-US", viewport={"width": 360, "height": 780},
                                      permissions=["camera"])
        page = context.new_page()
        page.goto(f"{site.url}/checkpoint")
        cdp = context.new_cdp_session(page)
        cdp.send("Emulation.setCPUThrottlingRate", {"rate": 4})
        sign_in_with_token(page, site, site.token("checkpoint"), "checkpoint")
        seen = result_of(page)
        assert (seen["valid"], seen["status"]) == ("true", "green")
        took = page.evaluate("""() => {
            const on = performance.getEntriesByName('hc-camera-on')[0];
            return on ? performance.now() - on.startTime : null;
        }""")
        TIMES[name] = took
        with capsys.disabled():
            print(f"\n{name}: read and checked {took:.0f} ms after the camera started "
                  f"(4x CPU throttling, jsQR)")
    finally:
        browser.close()
