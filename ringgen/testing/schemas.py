"""Hypothesis strategies for message schemas, produced as declarations that render to Python source.

A generated kernel module is text (so that a failing example prints exactly what a developer can
paste into a regression test); this module holds the small model of what that text declares: field
types (``TypeDecl``) and message or state classes (``MessageDecl``), and the strategies that draw them
over every scalar type, 1-D and 2-D arrays, nested messages and the bridged ``Str[N]`` / ``List[T, N]``.
"""

from __future__ import annotations

from typing import Optional

import attrs
from hypothesis import strategies as st

__all__ = [
    "FLOATS",
    "INTEGERS",
    "SCALARS",
    "MessageDecl",
    "TypeDecl",
    "bridged_fields",
    "direct_fields",
    "message_decls",
    "scalar",
]

INTEGERS = ("i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64")
FLOATS = ("f32", "f64")
#: Every scalar type of ``ringgen.types``, as its source name.
SCALARS = INTEGERS + FLOATS + ("bool_",)
BITS = {"i8": 8, "i16": 16, "i32": 32, "i64": 64, "u8": 8, "u16": 16, "u32": 32, "u64": 64}
BITS.update({"f32": 32, "f64": 64, "bool_": 8})


@attrs.frozen
class TypeDecl:
    """A field type as the generated source spells it.

    Attributes:
        kind: "scalar", "array", "message", "str" or "list".
        name: the scalar's name ("i32"), the message class name, or "" otherwise.
        elem: the element type of an array or a List.
        length: an array's length, a List's or a Str's bound (bytes for Str).
    """

    kind: str
    name: str = ""
    elem: Optional["TypeDecl"] = None
    length: int = 0

    @property
    def src(self) -> str:
        """The annotation text: ``i32``, ``Array[Array[u8, 2], 3]``, ``Str[5]``, ``Point``."""
        if self.kind in ("scalar", "message"):
            return self.name
        if self.kind == "array":
            return f"Array[{self.elem.src}, {self.length}]"
        if self.kind == "str":
            return f"Str[{self.length}]"
        return f"List[{self.elem.src}, {self.length}]"

    @property
    def bridged(self) -> bool:
        """True for Str and List (the message travels serialized)."""
        return self.kind in ("str", "list") or (self.elem is not None and self.elem.bridged)

    def uses(self) -> set[str]:
        """The names this annotation needs imported from ``ringgen.types``."""
        if self.kind == "scalar":
            return {self.name}
        if self.kind == "message":
            return set()
        head = {"array": "Array", "str": "Str", "list": "List"}[self.kind]
        return {head} | (self.elem.uses() if self.elem is not None else set())


def scalar(name: str) -> TypeDecl:
    """The ``TypeDecl`` of scalar ``name``."""
    return TypeDecl("scalar", name)


@attrs.frozen
class MessageDecl:
    """An ``@rg.message`` (or, with ``state``, an ``@rg.state``) class: name, fields, defaults.

    ``defaults`` maps a field name to the source text of its default (state classes only).
    ``nested`` lists the message classes its fields use, which must be declared before it.
    """

    name: str
    fields: tuple[tuple[str, TypeDecl], ...]
    state: bool = False
    defaults: tuple[tuple[str, str], ...] = ()
    nested: tuple["MessageDecl", ...] = ()

    @property
    def bridged(self) -> bool:
        return any(t.bridged for _, t in self.fields) or any(m.bridged for m in self.nested)

    def field(self, name: str) -> TypeDecl:
        return dict(self.fields)[name]

    def uses(self) -> set[str]:
        out: set[str] = set()
        for _, t in self.fields:
            out |= t.uses()
        for m in self.nested:
            out |= m.uses()
        return out

    def render(self) -> str:
        """The class declaration (decorator, name, one annotated field per line)."""
        deco = "@rg.state" if self.state else "@rg.message"
        defaults = dict(self.defaults)
        lines = [deco, f"class {self.name}:"]
        for name, t in self.fields:
            tail = f" = {defaults[name]}" if name in defaults else ""
            lines.append(f"    {name}: {t.src}{tail}")
        return "\n".join(lines) + "\n"


def _scalar_types(allow_f64: bool, allow_bool: bool = True) -> st.SearchStrategy[TypeDecl]:
    names = [s for s in SCALARS if (allow_f64 or s != "f64") and (allow_bool or s != "bool_")]
    return st.sampled_from(names).map(scalar)


@st.composite
def direct_fields(draw, nested: tuple[MessageDecl, ...] = (), allow_f64: bool = True) -> TypeDecl:
    """A fixed-size field type: a scalar (most often), a 1-D or 2-D array, a nested message."""
    kinds = ["scalar"] * 5 + ["array", "array2"] + (["message", "msg_array"] if nested else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "scalar":
        return draw(_scalar_types(allow_f64))
    if kind == "array":
        return TypeDecl(
            "array", elem=draw(_scalar_types(allow_f64)), length=draw(st.integers(1, 6))
        )
    if kind == "array2":
        inner = TypeDecl(
            "array", elem=draw(_scalar_types(allow_f64)), length=draw(st.integers(1, 3))
        )
        return TypeDecl("array", elem=inner, length=draw(st.integers(1, 3)))
    msg = TypeDecl("message", draw(st.sampled_from(nested)).name)
    if kind == "message":
        return msg
    return TypeDecl("array", elem=msg, length=draw(st.integers(1, 3)))


@st.composite
def bridged_fields(draw, allow_f64: bool = True) -> TypeDecl:
    """A bridged field type: ``Str[N]`` or ``List[T, N]`` of a scalar."""
    if draw(st.booleans()):
        return TypeDecl("str", length=draw(st.integers(1, 12)))
    elem = draw(_scalar_types(allow_f64, allow_bool=False))
    return TypeDecl("list", elem=elem, length=draw(st.integers(1, 6)))


@st.composite
def message_decls(
    draw,
    name: str,
    *,
    min_fields: int = 1,
    max_fields: int = 5,
    nested: tuple[MessageDecl, ...] = (),
    bridged: int = 0,
    allow_f64: bool = True,
    prefix: str = "f",
) -> MessageDecl:
    """A message class named ``name`` with ``min_fields..max_fields`` direct fields, which may use the
    classes in ``nested``, and exactly ``bridged`` extra Str/List fields, in a random order."""
    n = draw(st.integers(min_fields, max_fields))
    types = [draw(direct_fields(nested, allow_f64)) for _ in range(n)]
    types += [draw(bridged_fields(allow_f64)) for _ in range(bridged)]
    order = draw(st.permutations(range(len(types))))
    fields = tuple((f"{prefix}{i}", types[j]) for i, j in enumerate(order))
    used = {t.name for _, t in fields} | {
        t.elem.name for _, t in fields if t.elem is not None and t.elem.kind == "message"
    }
    return MessageDecl(name, fields, nested=tuple(m for m in nested if m.name in used))
