"""Acceptance rules: everything that decides whether a genuine code is accepted here.

- :mod:`healthcode.certlogic` (flat, a DESIGN.md contract): the CertLogic evaluator;
- :mod:`.ruleset`: EU DCC business rules as files, their format check and the EU's selection;
- :mod:`.valuesets`: the EU value sets rules read as ``external.valueSets``;
- :mod:`.projection`: any scheme's canonical record in the DCC payload shape rules read;
- :mod:`.modes`: checkpoint modes (which rules a checkpoint applies, what colour a pass gets);
- :mod:`.testing`: rule tests in the upstream format (``healthcode rules test``);
- :mod:`.export`: our TOML conversion policies written as EU rules.

Conversion policies (:mod:`healthcode.policy`) stay where they are and may name rules too.
"""
