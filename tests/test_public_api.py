"""The public namespace: what `lkkit` exports, sorted and documented."""

from __future__ import annotations

import inspect
import typing

import lkkit
import lkkit.testing


def isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then everything else."""
    if name.isupper():
        return 0, name
    return (1, name) if name[0].isupper() else (2, name)


def test_all_is_sorted_and_complete() -> None:
    for module in (lkkit, lkkit.testing):
        names = module.__all__
        assert names == sorted(names, key=isort_key), module.__name__
        assert len(set(names)) == len(names)
        for name in names:
            assert hasattr(module, name), f"{module.__name__}.{name}"
        public = {n for n in vars(module) if not n.startswith("_") and n != "annotations"}
        exported_or_submodule = set(names) | {
            n for n in public if inspect.ismodule(getattr(module, n))
        }
        assert public <= exported_or_submodule, public - exported_or_submodule


def test_every_export_is_documented() -> None:
    for module in (lkkit, lkkit.testing):
        for name in module.__all__:
            obj = getattr(module, name)
            # Type aliases carry their docs as attribute docstrings (read by mkdocstrings,
            # not by inspect); Python 3.10 reports `Callable[...]` aliases as classes.
            if typing.get_origin(obj) is not None:
                continue
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert inspect.getdoc(obj), f"{module.__name__}.{name} has no docstring"


def test_no_protobuf_types_in_public_signatures() -> None:
    for name in lkkit.__all__:
        obj = getattr(lkkit, name)
        if not inspect.isclass(obj):
            continue
        for attr, member in vars(obj).items():
            if attr.startswith("_") or attr == "sdk":
                continue
            target = member.fget if isinstance(member, property) else member
            if not callable(target):
                continue
            annotations = getattr(target, "__annotations__", {})
            for annotation in annotations.values():
                assert "_pb2" not in str(annotation), f"{name}.{attr}: {annotation}"
