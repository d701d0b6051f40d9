"""Names imported on first use (PEP 562), for lkkit's package namespaces.

Importing `lkkit` (which pytest does in every project that installs lkkit, for its
plugin) must not load the SDK, numpy or pydantic: the packages' `__init__` files list
their names and the private module of each, and import a module when one of its names
is first used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from importlib import import_module

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str,
    exports: Mapping[str, str],
    namespace: MutableMapping[str, object],
    names: Sequence[str],
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of `package`, whose `exports` map each public
    name to the private module (relative to `package`) that defines it."""

    def load(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module, package), name)
        namespace[name] = value  # later lookups do not come back here
        return value

    def listing() -> list[str]:
        return sorted({*namespace, *names})

    return load, listing
