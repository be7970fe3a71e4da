"""QR rendering: every image is read back with zxing-cpp, never trusted."""
import secrets

import pytest

from healthcode import qr
from healthcode.errors import BadRequest
from tests.support import decode_qr, decode_qr_result


def test_png_decodes_back_to_the_text():
    text = "eyJhbGciOiJFUzI1NiJ9." + secrets.token_urlsafe(150) + "." + secrets.token_urlsafe(64)
    assert decode_qr(qr.render(text, "png")) == text


def test_error_correction_m_by_default():
    assert decode_qr_result(qr.render("hello health code")).ec_level == "M"


def test_svg_is_a_real_qr_code():
    svg = qr.render("svg health code", "svg")
    assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg
    png = _rasterise_svg(svg)
    assert decode_qr(png) == "svg health code"


@pytest.mark.parametrize("seed", range(40))
def test_the_fixed_mask_pattern_reads_back_for_code_shaped_text(seed):
    """The mask search is skipped for speed; 40 random code-sized texts must still scan."""
    rng = secrets.SystemRandom()
    text = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
                   for _ in range(rng.randint(200, 287)))
    assert decode_qr(qr.render(text)) == text


def test_unknown_format_is_a_bad_request():
    with pytest.raises(BadRequest):
        qr.render("x", "gif")


def _rasterise_svg(svg: bytes) -> bytes:
    """Draw the SVG path's module squares with Pillow (qrcode writes ``Mx,yHx2Vy2Hxz``)."""
    import io
    import re

    from PIL import Image, ImageDraw

    size = float(re.search(rb'width="([\d.]+)mm"', svg).group(1))
    path = re.search(rb' d="([^"]+)"', svg).group(1).decode()
    scale = 10
    image = Image.new("L", (int(size * scale), int(size * scale)), 255)
    draw = ImageDraw.Draw(image)
    squares = re.findall(r"M([\d.]+),([\d.]+)H([\d.]+)V([\d.]+)H[\d.]+z", path)
    assert squares, "no modules in the SVG path"
    for x1, y1, x2, y2 in squares:
        draw.rectangle([float(x1) * scale, float(y1) * scale,
                        float(x2) * scale - 1, float(y2) * scale - 1], fill=0)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_a_smart_health_card_gets_a_numeric_segment():
    from tests.support import conformance_dir
    text = (conformance_dir("shc") / "example-00-f-qr-code-numeric-value-0.txt").read_text()
    text = text.strip()
    qr_code = qr.make(text)
    assert [d.mode for d in qr_code.data_list] == [4, 1]  # byte "shc:/", then numeric digits
    assert qr_code.version <= 21  # 33 as one byte-mode segment
    assert decode_qr(qr.render(text)) == text


def test_under_gevent_a_render_does_not_stop_the_loop():
    """In a gevent worker the image is drawn off the loop: other greenlets (other requests)
    keep running while it is drawn. Run in a child process, so that gevent's patching stays
    out of the test session."""
    import subprocess
    import sys

    code = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import time, gevent\n"
        "from healthcode import qr\n"
        "text = 'A' * 1800\n"
        "started = time.perf_counter(); direct = qr.render(text, 'png')\n"
        "drawn_in = time.perf_counter() - started\n"
        "gaps = []\n"
        "def ticker():\n"
        "    while True:\n"
        "        t = time.perf_counter(); gevent.sleep(0.002); gaps.append(time.perf_counter() - t)\n"
        "tick = gevent.spawn(ticker); gevent.sleep(0.02); gaps.clear()\n"
        "image = qr.render(text, 'png')\n"
        "tick.kill()\n"
        "assert image[:8] == b'\\x89PNG\\r\\n\\x1a\\n'\n"
        "print(drawn_in, max(gaps), len(gaps))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    drawn_in, longest_gap, ticks = (float(x) for x in out.stdout.split())
    assert ticks >= 3, "the loop did not run while the image was drawn"
    assert longest_gap < drawn_in / 2
