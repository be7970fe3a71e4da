"""Rendering codes as QR images (qrcode): PNG for phones and files, SVG for pages and print.

Rendering costs about a thousand times more than signing, so callers cache images per token
(see ``store.RedisStore.cached_image``) and keep codes short.
"""
from __future__ import annotations

import io

import qrcode
import qrcode.constants
from qrcode.image.pil import PilImage
from qrcode.image.svg import SvgPathImage

from .errors import BadRequest

FORMATS = {"png": "image/png", "svg": "image/svg+xml"}
ERROR_CORRECTION = {
    "L": qrcode.constants.ERROR_CORRECT_L,
    "M": qrcode.constants.ERROR_CORRECT_M,
    "Q": qrcode.constants.ERROR_CORRECT_Q,
    "H": qrcode.constants.ERROR_CORRECT_H,
}
#: pixels per module in PNGs: a version-12 code (65 modules) is then 650 px plus the border,
#: sharp on a phone screen and on a thermal printer
BOX_SIZE = 8
BORDER = 4
#: A fixed mask pattern. qrcode's search for the best of the eight masks evaluates each one in
#: pure Python and is 80% of the render time (~20 ms of 25). Every mask is valid for every
#: decoder; the search only lowers a penalty score, and the base64url text of a signed code is
#: already evenly mixed. The tests decode every image with zxing-cpp to hold us to that.
MASK_PATTERN = 0
#: Runs of at least this many digits or alphanumerics get their own compact segment. A SMART
#: Health Card is "shc:/" (byte mode) then digits (numeric mode), as its specification asks:
#: at error correction M, version 21 instead of 33 for the spec's example 00. A JWT or an "HC1:"
#: code stays one segment.
OPTIMIZE = 20


def make(text: str, error_correction: str = "M", box_size: int = BOX_SIZE) -> qrcode.QRCode:
    qr = qrcode.QRCode(error_correction=ERROR_CORRECTION[error_correction], box_size=box_size,
                       border=BORDER, mask_pattern=MASK_PATTERN)
    qr.add_data(text, optimize=OPTIMIZE)
    qr.make(fit=True)
    return qr


def version(text: str, error_correction: str = "M") -> int:
    """The smallest QR version that holds ``text`` (sized only: no matrix is drawn)."""
    qr = qrcode.QRCode(error_correction=ERROR_CORRECTION[error_correction])
    qr.add_data(text, optimize=OPTIMIZE)
    return qr.best_fit()


def render(text: str, fmt: str = "png", error_correction: str = "M") -> bytes:
    """The QR image of ``text`` as PNG or SVG bytes.

    Under gevent workers the drawing runs in the hub's thread pool. It is pure Python and holds
    the GIL, so it is not faster, but the interpreter switches threads every few milliseconds:
    the worker's loop keeps answering verifies while an image is drawn, instead of making each
    of them wait for the whole image (``bench/slow_clients.py --only cpu`` measures it).
    """
    if fmt not in FORMATS:
        raise BadRequest(f"format must be one of {', '.join(FORMATS)}", reason="invalid_field",
                         field="format")
    pool = _gevent_threadpool()
    if pool is not None:
        return pool.apply(_draw, (text, fmt, error_correction))
    return _draw(text, fmt, error_correction)


def _draw(text: str, fmt: str, error_correction: str) -> bytes:
    qr = make(text, error_correction)
    out = io.BytesIO()
    if fmt == "png":
        image = qr.make_image(image_factory=PilImage)
        image.save(out, format="PNG")
    else:
        qr.make_image(image_factory=SvgPathImage).save(out)
    return out.getvalue()


def _gevent_threadpool():
    """gevent's thread pool when this process runs gevent's loop (a gevent worker), else None."""
    try:
        from gevent import monkey
    except ImportError:
        return None
    if not monkey.is_module_patched("threading"):
        return None
    import gevent

    return gevent.get_hub().threadpool


def render_compact(text: str, error_correction: str = "M") -> bytes:
    """The smallest PNG of ``text``: one pixel per module, with the quiet zone.

    A page scales it up with ``image-rendering: pixelated``, so it is as sharp as the large PNG
    at a fraction of the bytes (a native code: about 400 bytes against 68 KB of SVG). Drawn in
    gevent's thread pool under gevent workers, as :func:`render` is.
    """
    pool = _gevent_threadpool()
    if pool is not None:
        return pool.apply(_draw_compact, (text, error_correction))
    return _draw_compact(text, error_correction)


def _draw_compact(text: str, error_correction: str) -> bytes:
    image = make(text, error_correction, box_size=1).make_image(image_factory=PilImage)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
