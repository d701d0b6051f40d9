"""The public namespace: what `lkkit` exports, sorted and documented."""

from __future__ import annotations

import ast
import inspect
import types
import typing
from pathlib import Path

import pytest

import lkkit
import lkkit.testing

PACKAGES = (lkkit, lkkit.testing)


def isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then everything else."""
    if name.isupper():
        return 0, name
    return (1, name) if name[0].isupper() else (2, name)


def test_all_is_sorted_and_complete() -> None:
    for module in PACKAGES:
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


def _type_checking_imports(module: types.ModuleType) -> dict[str, str]:
    """Name -> module of the imports in the `if TYPE_CHECKING:` block of a package."""
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text())
    imports: dict[str, str] = {}
    for node in tree.body:
        if not isinstance(node, ast.If) or not isinstance(node.test, ast.Name | ast.Attribute):
            continue  # `if not TYPE_CHECKING:` is the runtime side
        if ast.unparse(node.test).endswith("TYPE_CHECKING"):
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom), ast.unparse(statement)
                for alias in statement.names:
                    imports[alias.asname or alias.name] = "." * statement.level + (
                        statement.module or ""
                    )
    return imports


def test_lazy_exports_agree_with_all_and_the_type_checking_imports() -> None:
    """The names are imported on first use: what type checkers see (the `TYPE_CHECKING`
    imports), what `__getattr__` loads (`_EXPORTS`) and `__all__` must be the same."""
    for module in PACKAGES:
        exports: dict[str, str] = module._EXPORTS
        eager = {"__version__"} if module is lkkit else set()
        assert set(exports) | eager == set(module.__all__), module.__name__
        assert _type_checking_imports(module) == exports, module.__name__
        assert set(module.__all__) <= set(dir(module)), module.__name__


def test_every_export_resolves_and_nothing_else_does() -> None:
    for module in PACKAGES:
        for name in module.__all__:
            getattr(module, name)
            assert name in vars(module), f"{module.__name__}.{name} is not kept once loaded"
        with pytest.raises(AttributeError, match="Sesion"):
            _ = module.Sesion


def test_every_export_is_documented() -> None:
    for module in PACKAGES:
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
