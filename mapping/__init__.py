"""Mapping adapters: one per scheme family, found through the ``healthcode.mappings`` entry points.

::

    from mapping import get_adapter, available_schemes, CodeError
    adapter = get_adapter("eu-dcc")
    decoded = adapter.decode(text, trust=trust, at=when)
"""
from healthcode.errors import CODE_REASONS, CodeError

from .base import Decoded, MappingAdapter, Signer
from .registry import (BrokenAdapter, DuplicateScheme, Registry, RegistryError, UnknownScheme,
                       available_schemes, default_registry, get_adapter)

__all__ = [
    "CODE_REASONS", "CodeError", "Decoded", "MappingAdapter", "Signer", "Registry",
    "RegistryError", "UnknownScheme", "DuplicateScheme", "BrokenAdapter", "available_schemes",
    "default_registry", "get_adapter",
]
