"""Finding adapters: entry points in the group ``healthcode.mappings``, name = scheme.

Modelled on stevedore's driver manager: a lookup fails in exactly one of three distinct ways
(unknown name, two adapters claiming a name, an adapter that will not load), and loading is
eager, so a broken plugin stops the service at start-up instead of failing the first scan.
"""
from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Iterable

from healthcode.errors import ConfigurationError

from .base import MappingAdapter

GROUP = "healthcode.mappings"


class RegistryError(ConfigurationError):
    """A mapping adapter cannot be found or loaded."""


class UnknownScheme(RegistryError, KeyError):
    """No adapter is registered under this scheme name."""

    reason = "unsupported_scheme"
    status = 400

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class DuplicateScheme(RegistryError):
    """Two different adapters claim the same scheme name."""


class BrokenAdapter(RegistryError):
    """An adapter's entry point fails to import or does not implement the contract."""


class Registry:
    """Scheme name -> adapter instance."""

    def __init__(self, adapters: Iterable[MappingAdapter] = ()):
        self._adapters: dict[str, MappingAdapter] = {}
        for adapter in adapters:
            self.add(adapter)

    @classmethod
    def from_entry_points(cls, group: str = GROUP) -> "Registry":
        registry = cls()
        seen: dict[str, EntryPoint] = {}
        for ep in entry_points(group=group):
            if ep.name in seen:
                if seen[ep.name].value == ep.value:
                    continue  # the same distribution seen twice (editable installs do this)
                raise DuplicateScheme(
                    f"scheme {ep.name!r} is claimed by both {seen[ep.name].value} and {ep.value}")
            seen[ep.name] = ep
            registry.add(_load(ep), name=ep.name)
        return registry

    def add(self, adapter: MappingAdapter, name: str | None = None) -> None:
        if not isinstance(adapter, MappingAdapter):
            raise BrokenAdapter(f"{adapter!r} does not implement MappingAdapter")
        name = name or adapter.scheme
        if not name:
            raise BrokenAdapter(f"{adapter!r} has no scheme name")
        if name in self._adapters and self._adapters[name] is not adapter:
            raise DuplicateScheme(f"scheme {name!r} is claimed by both "
                                  f"{self._adapters[name]!r} and {adapter!r}")
        adapter.scheme = name
        self._adapters[name] = adapter

    def get(self, name: str) -> MappingAdapter:
        try:
            return self._adapters[name]
        except KeyError:
            raise UnknownScheme(f"no adapter for scheme {name!r}; known: "
                                f"{', '.join(sorted(self._adapters)) or 'none'}") from None

    def names(self) -> list[str]:
        return sorted(self._adapters)

    def adapters(self) -> list[MappingAdapter]:
        return [self._adapters[n] for n in self.names()]

    def detect(self, text: str) -> MappingAdapter | None:
        """The adapter that recognises ``text``; the most specific wins.

        Several adapters may claim a compact JWT (ours recognises any; a partner's only those
        with its issuers), so each adapter's ``specificity`` breaks the tie, then the name.
        """
        found = []
        for adapter in self.adapters():
            try:
                if adapter.detect(text):
                    found.append(adapter)
            except Exception:  # a detect() that throws is a "no", not a crash of the scan
                continue
        if not found:
            return None
        return max(found, key=lambda a: getattr(a, "specificity", 0))

    def __contains__(self, name: str) -> bool:
        return name in self._adapters


def _load(ep: EntryPoint) -> MappingAdapter:
    try:
        target = ep.load()
    except Exception as exc:
        raise BrokenAdapter(f"mapping adapter {ep.name!r} ({ep.value}) failed to import: "
                            f"{type(exc).__name__}: {exc}") from exc
    try:
        adapter = target() if isinstance(target, type) else target
    except Exception as exc:
        raise BrokenAdapter(f"mapping adapter {ep.name!r} ({ep.value}) failed to start: "
                            f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(adapter, MappingAdapter):
        raise BrokenAdapter(f"mapping adapter {ep.name!r} ({ep.value}) is not a MappingAdapter")
    return adapter


_default: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry of installed adapters, loaded on first use."""
    global _default
    if _default is None:
        _default = Registry.from_entry_points()
    return _default


def get_adapter(name: str) -> MappingAdapter:
    """The installed adapter for scheme ``name``; :class:`UnknownScheme` if there is none."""
    return default_registry().get(name)


def available_schemes() -> list[str]:
    return default_registry().names()
