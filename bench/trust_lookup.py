"""Does loading the real trust lists slow decoding down? One process, alternating rounds.

The decoder benches (``decode_eu_dcc.py``, ``decode_shc.py``, with ``--trust-lists``) compare
each adapter with its floor; on this shared machine two separate runs drift by more than the
effect looked for. Here the floor, the adapter with only the test keys, and the adapter with
the shared real lists also loaded (1,448 DSC entries, 651 SHC issuers) take turns in the same
process, so the ratio "with lists / without" isolates what the lists cost per decode (target:
none, since lookups stay by kid) and the ratio against the floor is the decoder benches' own.

    python3 bench/trust_lookup.py [--seconds 6]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import decode_eu_dcc, decode_shc  # noqa: E402
from bench.rounds import alternate  # noqa: E402
from bench.trust_lists import load_shared_lists  # noqa: E402
from mapping.eu_dcc import EUDCCAdapter  # noqa: E402


def eu_dcc(seconds: float) -> dict:
    adapter = EUDCCAdapter()
    plain, codes, keys = decode_eu_dcc.load_corpus(adapter)
    loaded, _, _ = decode_eu_dcc.load_corpus(adapter)
    load_shared_lists(loaded)
    by_text = dict(codes)

    def with_trust(trust):
        return lambda text: adapter.decode(text, trust=trust, at=by_text[text])

    return alternate({"floor": lambda text: decode_eu_dcc.floor_decode(text, keys),
                      "adapter": with_trust(plain), "adapter+lists": with_trust(loaded)},
                     [text for text, _ in codes], seconds)


def shc(seconds: float) -> dict:
    return alternate({"floor": decode_shc.make_floor(), "adapter": decode_shc.make_adapter(),
                      "adapter+lists": decode_shc.make_adapter(trust_lists=True)},
                     decode_shc.load_samples(), seconds)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="per contender and scheme")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    for name, run in (("eu-dcc", eu_dcc), ("shc", shc)):
        result = run(args.seconds)
        rates = result["rates"]
        print(f"{name}: floor {rates['floor']:.0f}/s, adapter {rates['adapter']:.0f}/s, "
              f"adapter with the lists {rates['adapter+lists']:.0f}/s ({result['rounds']} "
              f"alternating rounds)")
        print(f"  with lists / without {rates['adapter+lists'] / rates['adapter']:.2f}; "
              f"adapter/floor {rates['adapter'] / rates['floor']:.2f} without the lists, "
              f"{rates['adapter+lists'] / rates['floor']:.2f} with them (target >= 0.70)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
