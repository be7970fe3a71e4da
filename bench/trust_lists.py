"""The shared real trust lists, loaded into a benchmark's trust store (``--trust-lists``).

1,448 EU DCC DSC entries (the German list's 832 and the Swedish list's 616, all of them also in
the German one) and the VCI directory snapshot's 651 SMART Health Card issuers, read by the
same code the service uses for its trust folder.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LISTS = ("de-dsc-list.json", "se-dsc-list.json", "vci-snapshot.json")


def shared_lists_dir() -> Path:
    root = Path(os.environ.get("HEALTHCODE_CONFORMANCE_DIR", REPO.parent / "shared" /
                               "conformance")) / "trustlists"
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is missing (see tests/support.py UPSTREAM"
                                f"['trustlists']); set HEALTHCODE_CONFORMANCE_DIR")
    return root


def load_shared_lists(trust) -> None:
    for name in LISTS:
        trust.load_path(shared_lists_dir() / name)
