"""The public namespace: what `lkkit` exports, sorted and documented."""

from __future__ import annotations

import ast
import dataclasses
import enum
import inspect
import types
import typing
from pathlib import Path

import pytest
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.message import Message

import lkkit
import lkkit.agents
import lkkit.testing

PACKAGES = (lkkit, lkkit.testing, lkkit.agents)
# Imported on first use (the pytest plugin imports them in every pytest run);
# `lkkit.agents` is imported only by what uses it, so it imports eagerly.
LAZY_PACKAGES = (lkkit, lkkit.testing)


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
    for module in LAZY_PACKAGES:
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


def _protobuf_parts(annotation: object) -> list[object]:
    """The protobuf types in a resolved annotation, looking inside unions and generics.

    The SDK's own enums (`rtc.ConnectionQuality`...) mirror protobuf enums value for
    value; lkkit converts them to its own enums, so they count too.
    """
    if isinstance(annotation, EnumTypeWrapper):
        return [annotation]
    module = getattr(annotation, "__module__", "") or ""
    found: list[object] = []
    if isinstance(annotation, type) and (
        issubclass(annotation, Message)
        or module.endswith("_pb2")
        or (issubclass(annotation, enum.Enum) and module.startswith("livekit."))
    ):
        found.append(annotation)
    for arg in typing.get_args(annotation):
        found.extend(_protobuf_parts(arg))
    return found


def _annotation_problems(owner: str, hints: dict[str, object], raw: dict[str, object]) -> list[str]:
    """`owner.name: annotation` for each public annotation that holds a protobuf type."""
    problems = []
    for attr, annotation in hints.items():
        if attr.startswith("_"):
            continue
        # A protobuf enum's `ValueType` resolves to `int`; its spelling still shows it.
        if "_pb2" in str(raw.get(attr, "")) or _protobuf_parts(annotation):
            problems.append(f"{owner}.{attr}: {raw.get(attr, annotation)}")
    return problems


def _public_classes() -> list[tuple[str, type]]:
    return [(n, obj) for n in lkkit.__all__ if inspect.isclass(obj := getattr(lkkit, n))]


def test_no_protobuf_types_in_public_dataclass_fields() -> None:
    """Events and value types are dataclasses: every public field, resolved, is checked."""
    dataclasses_seen = 0
    problems: list[str] = []
    for name, cls in _public_classes():
        if not dataclasses.is_dataclass(cls):
            continue
        dataclasses_seen += 1
        hints = typing.get_type_hints(cls)
        raw = {f.name: f.type for f in dataclasses.fields(cls)}
        fields = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
        problems += _annotation_problems(name, fields, raw)
    assert problems == []
    # The events alone are more than 30 dataclasses: the loop really saw them.
    assert dataclasses_seen > 30


def test_no_protobuf_types_in_public_signatures() -> None:
    problems: list[str] = []
    for name, cls in _public_classes():
        for attr, member in vars(cls).items():
            if attr.startswith("_"):
                continue
            target = member.fget if isinstance(member, property) else member
            if not callable(target):
                continue
            raw = dict(getattr(target, "__annotations__", {}))
            try:
                hints: dict[str, object] = typing.get_type_hints(target)
            except NameError:  # a name imported for type checkers only: the spelling
                hints = raw
            problems += _annotation_problems(f"{name}.{attr}", hints, raw)
    assert problems == []
