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
