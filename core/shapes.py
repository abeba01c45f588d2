"""Checking a value against its declared shape at a boundary (a store read, a worker's wire), once.

Shapes are `TypedDict`s (core/records.py, core/worker_contract.py): the type checker holds every use of a
record to its declaration, and `validate` holds what comes in from outside to the same declaration, with
pydantic (strict: nothing is coerced). The value itself is handed on, unchanged: fields this version does
not know (written by a newer one) are kept, so a read-modify-write never drops them.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from pydantic import TypeAdapter, ValidationError

T = TypeVar("T")


class ShapeInvalid(ValueError):
    """A value is not of its shape; `reason` says where and why in a few words ("models must be a list")."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


_adapters: dict[object, TypeAdapter[Any]] = {}


def adapter(shape: Any) -> TypeAdapter[Any]:
    """pydantic's adapter of a shape (a TypedDict or a dataclass), built once per shape when first used (two
    threads may both build it: no harm)."""
    built = _adapters.get(shape)
    if built is None:
        from pydantic import TypeAdapter

        built = _adapters[shape] = TypeAdapter(_resolved(shape))
    return built


def _resolved(shape: Any) -> Any:
    """A dataclass's string annotations (`from __future__ import annotations`) resolved in its own module, once:
    pydantic 2.0 (the floor requirements.txt allows) looks them up where the adapter is built instead, so a field
    of a type imported by the dataclass's module (Template.proof: Proof) was "not defined" there."""
    if isinstance(shape, type) and dataclasses.is_dataclass(shape):
        hints = typing.get_type_hints(shape)
        for field in dataclasses.fields(shape):
            field.type = hints[field.name]
    return shape


def validate(shape: type[T], value: object) -> T:
    """`value`, if it is a `shape`; ShapeInvalid otherwise."""
    from pydantic import ValidationError

    try:
        adapter(shape).validate_python(value, strict=True)
    except ValidationError as err:
        raise ShapeInvalid(describe(err)) from None
    return cast(T, value)  # checked: the value itself, not pydantic's copy (which drops unknown fields)


_MUST_BE = {
    "dict_type": "an object", "list_type": "a list", "string_type": "a string", "int_type": "a whole number",
    "float_type": "a number", "bool_type": "true or false", "none_required": "null",
}


def describe(err: ValidationError) -> str:
    """The first problem, in the reader's words: `custom_nodes[0] has no archive`, `state must be one of ...`."""
    first = err.errors()[0]
    loc = list(first["loc"])
    where = _path(loc)
    kind = first["type"]
    if kind == "missing":
        return f"{_path(loc[:-1]) or 'it'} has no {loc[-1]}"
    if not loc and kind == "dict_type":
        return "not a JSON object"
    if kind in _MUST_BE:
        return f"{where} must be {_MUST_BE[kind]}"
    if kind == "literal_error":
        return f"{where} must be {first['ctx']['expected']}"
    return f"{where or 'it'}: {first['msg']}"


def _path(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out
