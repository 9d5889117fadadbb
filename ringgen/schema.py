"""``@rg.message`` and ``@rg.state``: attrs classes that also record a validated schema.

A decorated class stays an ordinary attrs class (init, eq, repr, slots). The decorator records where
the class and each field were declared; the schema itself (``spec_of``) is resolved on first use, so
that fields may name classes declared later in the module. Every rejected declaration raises
``SchemaError`` naming the class and the field, at the field's file, line and column.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import sys
import typing
from typing import Any, Callable, Optional, TypeVar, overload

import attrs

from .errors import SchemaError
from .naming import check_identifier_shape, reserved_by
from .source_index import class_node
from .types import (
    ArrayType,
    FieldType,
    ListType,
    MessageType,
    ScalarType,
    StrType,
    _Malformed,
    bool_,
    f64,
    i64,
)

__all__ = ["FieldSpec", "MessageSpec", "message", "state", "spec_of", "is_message_class"]

T = TypeVar("T")

#: Largest payload a bridged message may need, and the largest direct struct (docs/design.md §3).
PAYLOAD_BOUND = 65536

_PLAIN = {int: i64, float: f64, bool: bool_}


@attrs.frozen
class SourcePos:
    """Where something was declared: file, 1-based line, 0-based column (None when unknown)."""

    file: Optional[str] = None
    line: Optional[int] = None
    col: Optional[int] = None
    end_col: Optional[int] = None


@attrs.frozen
class FieldSpec:
    """One validated field: its name, resolved type, default (``attrs.NOTHING`` if none), position."""

    name: str
    type: FieldType
    default: Any = attrs.field(eq=False)
    pos: SourcePos = attrs.field(eq=False)


@attrs.frozen
class MessageSpec:
    """A validated message or state class.

    ``kind`` is ``"message"`` or ``"state"``; ``fields`` are in declaration order.
    """

    name: str
    cls: type = attrs.field(eq=False)
    kind: str
    fields: tuple[FieldSpec, ...]
    pos: SourcePos = attrs.field(eq=False)

    @property
    def is_bridged(self) -> bool:
        """True when any field (at any depth) is a ``Str`` or a ``List``."""
        return any(_type_is_bridged(f.type) for f in self.fields)

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def nested(self) -> list["MessageSpec"]:
        """Every message class used by this one (at any depth), dependencies first, no repeats."""
        out: list[MessageSpec] = []
        _collect_nested(self, out, set())
        return out[:-1]


def _collect_nested(spec: MessageSpec, out: list[MessageSpec], seen: set) -> None:
    # each class once: a class nested twice at every level would otherwise cost 2**depth
    if spec.cls in seen:
        return
    seen.add(spec.cls)
    for f in spec.fields:
        for mt in _message_types_in(f.type):
            _collect_nested(spec_of(mt.cls), out, seen)
    out.append(spec)


def _message_types_in(t: FieldType) -> list[MessageType]:
    if isinstance(t, MessageType):
        return [t]
    if isinstance(t, (ArrayType, ListType)):
        return _message_types_in(t.elem)
    return []


def _type_is_bridged(t: FieldType) -> bool:
    if isinstance(t, (StrType, ListType)):
        return True
    if isinstance(t, ArrayType):
        return _type_is_bridged(t.elem)
    if isinstance(t, MessageType):
        known = _BRIDGED.get(t.cls)
        return spec_of(t.cls).is_bridged if known is None else known
    return False


@attrs.frozen
class _Declaration:
    kind: str
    pos: SourcePos
    field_pos: dict = attrs.field(eq=False)
    namespace: dict = attrs.field(eq=False)


_SPECS: dict[type, MessageSpec] = {}
_RESOLVING: list[type] = []
#: Per resolved class: whether it is bridged, and its deepest chain of nested message classes
#: (itself first), so neither is walked again for every class that nests it.
_BRIDGED: dict[type, bool] = {}
_CHAINS: dict[type, tuple[str, ...]] = {}

#: Members MemoryPack can count in an object's header byte: 0-249 are member counts, 250-254 are
#: reserved (250 marks a wide union tag or a circular reference) and 255 is the null object
#: (MemoryPackCode.cs: "0~249 is member count or tag, 250~254 is unused, 255 is null").
MAX_BRIDGED_FIELDS = 249

#: Levels of nested messages a class may have (itself counting as one). Generated encoders,
#: decoders and layout code recurse once per level; 32 is far beyond any real schema and keeps
#: every one of them far from Python's recursion limit (200 levels used to raise RecursionError).
MAX_NESTING_DEPTH = 32


def is_message_class(obj: Any) -> bool:
    """True for a class decorated with ``@rg.message`` or ``@rg.state``."""
    return isinstance(obj, type) and "__ringgen_decl__" in obj.__dict__


def spec_of(cls: type) -> MessageSpec:
    """The validated schema of a ``@rg.message``/``@rg.state`` class (resolved once, then cached).

    Raises:
        SchemaError: the class is not decorated, or a field cannot be resolved or is not allowed.
    """
    if cls in _SPECS:
        return _SPECS[cls]
    if not is_message_class(cls):
        raise SchemaError(
            f"{getattr(cls, '__qualname__', cls)!s} is not a ringgen message",
            hint="decorate the class with @rg.message (or @rg.state for kernel state)",
        )
    if cls in _RESOLVING:
        chain = " -> ".join(c.__name__ for c in _RESOLVING[_RESOLVING.index(cls) :] + [cls])
        decl = cls.__ringgen_decl__
        raise SchemaError(
            f"message {cls.__name__} contains itself ({chain}); a fixed-size layout cannot hold it",
            file=decl.pos.file,
            line=decl.pos.line,
            col=decl.pos.col,
            hint="hold the child by an id field (e.g. parent_id: i64) instead of nesting it",
        )
    if len(_RESOLVING) >= MAX_NESTING_DEPTH:
        raise _too_deep(_RESOLVING[0], [c.__name__ for c in _RESOLVING] + [cls.__name__])
    _RESOLVING.append(cls)
    try:
        spec = _resolve(cls)
        _check_limits(spec)
    finally:
        _RESOLVING.pop()
    _SPECS[cls] = spec
    return spec


class _LimitError(SchemaError):
    """A class exceeds a wire or nesting limit: raised at declaration when the class resolves then."""


def _too_deep(cls: type, chain: list[str]) -> SchemaError:
    decl = cls.__ringgen_decl__
    shown = chain if len(chain) <= 8 else chain[:4] + ["..."] + chain[-3:]
    return _LimitError(
        f"message {cls.__name__} nests messages {len(chain)} levels deep "
        f"({' -> '.join(shown)}); at most {MAX_NESTING_DEPTH} levels are supported",
        file=decl.pos.file,
        line=decl.pos.line,
        col=decl.pos.col,
        end_col=decl.pos.end_col,
        hint="flatten the innermost levels into fields of their parent",
    )


def _check_limits(spec: MessageSpec) -> None:
    """Record and check what a resolved class adds to its nested ones: depth and member count."""
    cls = spec.cls
    deepest: tuple[str, ...] = ()
    for f in spec.fields:
        for mt in _message_types_in(f.type):
            chain = _CHAINS.get(mt.cls, (mt.name,))
            if len(chain) > len(deepest):
                deepest = chain
    chain = (cls.__name__,) + deepest
    if len(chain) > MAX_NESTING_DEPTH:
        raise _too_deep(cls, list(chain))
    _CHAINS[cls] = chain
    _BRIDGED[cls] = bridged = any(_type_is_bridged(f.type) for f in spec.fields)
    if bridged and len(spec.fields) > MAX_BRIDGED_FIELDS:
        decl = cls.__ringgen_decl__
        raise _LimitError(
            f"message {cls.__name__} has {len(spec.fields)} fields; a bridged message (one with a "
            f"Str or List) travels as a MemoryPack object, which counts at most "
            f"{MAX_BRIDGED_FIELDS} members",
            file=decl.pos.file,
            line=decl.pos.line,
            col=decl.pos.col,
            end_col=decl.pos.end_col,
            hint="group fields into nested @rg.message classes",
        )


def _field_error(cls: type, field: str, pos: SourcePos, message: str, hint: str | None = None):
    return SchemaError(
        f"{cls.__name__}.{field}: {message}",
        file=pos.file,
        line=pos.line,
        col=pos.col,
        end_col=pos.end_col,
        hint=hint,
    )


def _resolve(cls: type) -> MessageSpec:
    decl: _Declaration = cls.__ringgen_decl__
    raw = dict(cls.__dict__.get("__annotations__", {}))
    fields = []
    for a in attrs.fields(cls):
        pos = decl.field_pos.get(a.name, decl.pos)
        ann = raw.get(a.name, a.type)
        ftype = _resolve_annotation(cls, a.name, pos, ann, decl)
        if decl.kind == "state" and _type_is_bridged(ftype):
            raise _field_error(
                cls,
                a.name,
                pos,
                "kernel state must be fixed-size; Str and List are only allowed in messages",
                hint="use Array[T, N] with a length field",
            )
        fields.append(FieldSpec(a.name, ftype, a.default, pos))
    return MessageSpec(cls.__name__, cls, decl.kind, tuple(fields), decl.pos)


def _resolve_annotation(cls, fname, pos, ann, decl) -> FieldType:
    if isinstance(ann, str):
        ns = dict(decl.namespace)
        module = sys.modules.get(cls.__module__)
        if module is not None:  # classes declared after this one (forward references)
            ns.update(vars(module))
        ns.setdefault(cls.__name__, cls)
        try:
            ann = eval(ann, ns)  # noqa: S307 - annotations are the user's own source
        except NameError as exc:
            raise _field_error(
                cls,
                fname,
                pos,
                f"unknown type in annotation: {exc}",
                hint="import the type, e.g. `from ringgen.types import f32, Array`",
            ) from None
        except Exception as exc:  # a malformed annotation expression
            raise _field_error(cls, fname, pos, f"cannot evaluate annotation: {exc}") from None
    return _to_field_type(cls, fname, pos, ann, top=True)


def _to_field_type(cls, fname, pos, ann, *, top: bool, in_array: bool = False) -> FieldType:
    err = lambda msg, hint=None: _field_error(cls, fname, pos, msg, hint)  # noqa: E731
    if isinstance(ann, ScalarType):
        return ann
    if ann in _PLAIN:
        return _PLAIN[ann]
    if isinstance(ann, _Malformed):
        raise err(f"malformed {ann.alias}[...] annotation", ann.hint)
    if isinstance(ann, ArrayType):
        n = ann.length
        if not isinstance(n, int) or isinstance(n, bool):
            raise err(f"Array length must be an integer literal, got {n!r}", "e.g. Array[f32, 4]")
        if n <= 0:
            raise err(f"Array length must be positive, got {n}", "e.g. Array[f32, 4]")
        elem = _to_field_type(cls, fname, pos, ann.elem, top=False, in_array=True)
        if _type_is_bridged(elem):
            raise err(
                "Array elements must be fixed-size; a Str or List inside an Array is not allowed",
                "use List[T, N] for a bounded collection of variable-size items",
            )
        return ArrayType(elem, n)
    if isinstance(ann, StrType):
        n = ann.max_bytes
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise err(
                f"Str bound must be a positive integer number of bytes, got {n!r}", "e.g. Str[64]"
            )
        if n > PAYLOAD_BOUND:
            raise err(f"Str[{n}] exceeds the {PAYLOAD_BOUND}-byte payload bound")
        return ann
    if isinstance(ann, ListType):
        n = ann.max_len
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise err(f"List bound must be a positive integer, got {n!r}", "e.g. List[f32, 16]")
        elem = _to_field_type(cls, fname, pos, ann.elem, top=False)
        if isinstance(elem, (ListType, StrType)):
            raise err(
                "List elements must be scalars, Arrays or messages, not Str or List",
                "wrap the inner value in a @rg.message class",
            )
        return ListType(elem, n)
    if isinstance(ann, type) and ann in _RESOLVING:  # name the field that closes the cycle
        chain = " -> ".join(c.__name__ for c in _RESOLVING[_RESOLVING.index(ann) :] + [ann])
        raise err(
            f"message {ann.__name__} contains itself ({chain}); a fixed-size layout cannot hold it",
            "hold the child by an id field (e.g. parent_id: i64) instead of nesting it",
        )
    if is_message_class(ann):
        if ann.__ringgen_decl__.kind == "state":
            raise err(f"{ann.__name__} is a @rg.state class; only messages can be nested")
        spec_of(ann)  # resolve now: catches recursion and errors inside the nested class
        return MessageType(ann, ann.__name__)
    if ann is cls:
        raise SchemaError(
            f"message {cls.__name__} contains itself (field {fname}); a fixed-size layout cannot hold it",
            file=pos.file,
            line=pos.line,
            col=pos.col,
            hint="hold the child by an id field (e.g. parent_id: i64) instead of nesting it",
        )
    return _reject(err, ann)


def _reject(err, ann):
    origin = typing.get_origin(ann)
    if ann is str:
        raise err("unbounded str is not supported", "use Str[N] with a bound N in UTF-8 bytes")
    if ann is bytes or ann is bytearray:
        raise err("bytes is not supported", "use Array[u8, N] (fixed) or List[u8, N] (bounded)")
    if ann in (list, tuple, set, frozenset) or origin in (list, tuple, set, frozenset):
        name = getattr(origin or ann, "__name__", str(ann))
        raise err(
            f"{name} is not supported: GPU messages need a bound", "use Array[T, N] or List[T, N]"
        )
    if ann is dict or origin is dict:
        raise err(
            "dict is not supported in messages", "use two List[T, N] fields, or a List of a message"
        )
    if origin is typing.Union or type(ann).__name__ == "UnionType":
        raise err("Optional and Union are not supported", "use a separate has_x: bool_ field")
    if ann is complex:
        raise err("complex is not supported", "use two f32 or f64 fields")
    if ann is typing.Any or ann is object:
        raise err(
            "a field needs a concrete type", "use one of i8..u64, f32, f64, bool_, Array, Str, List"
        )
    if isinstance(ann, type) and attrs.has(ann):
        raise err(
            f"{ann.__name__} is an attrs class but not a ringgen message",
            f"decorate {ann.__name__} with @rg.message",
        )
    if isinstance(ann, type):
        raise err(
            f"unsupported field type {ann.__qualname__}",
            "use one of i8..u64, f32, f64, bool_, Array, Str, List or a @rg.message class",
        )
    raise err(
        f"unsupported field type {ann!r}",
        "use one of i8..u64, f32, f64, bool_, Array, Str, List or a @rg.message class",
    )


def _positions(cls: type) -> tuple[SourcePos, dict[str, SourcePos]]:
    """Find where ``cls`` and each of its annotated fields are written in its source file."""
    try:
        file = inspect.getsourcefile(cls) or inspect.getfile(cls)
    except (OSError, TypeError):
        return SourcePos(), {}
    module = sys.modules.get(cls.__module__)
    node = class_node(file, cls.__qualname__, getattr(module, "__dict__", None))
    if node is None:
        return SourcePos(), {}
    start = len("class ")
    cls_pos = SourcePos(
        file, node.lineno, node.col_offset + start, node.col_offset + start + len(node.name)
    )
    fields = {}
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            fields[stmt.target.id] = SourcePos(
                file, stmt.lineno, stmt.target.col_offset, stmt.target.end_col_offset
            )
    return cls_pos, fields


def _declare(cls: type, kind: str) -> type:
    if not isinstance(cls, type):
        raise SchemaError(f"@rg.{kind} decorates a class, not {type(cls).__name__}")
    pos, field_pos = _positions(cls)
    name_problem = check_identifier_shape(cls.__name__)
    if name_problem:
        raise SchemaError(
            f"class {cls.__name__}: {name_problem}",
            file=pos.file,
            line=pos.line,
            col=pos.col,
            end_col=pos.end_col,
        )
    langs = reserved_by(cls.__name__, type_name=True)
    if langs:
        raise SchemaError(
            f"class {cls.__name__}: the name is a reserved word in {', '.join(langs)}",
            file=pos.file,
            line=pos.line,
            col=pos.col,
            end_col=pos.end_col,
            hint=f"rename the class, e.g. {cls.__name__.capitalize()}Msg",
        )
    anns = cls.__dict__.get("__annotations__", {})
    if not anns:
        raise SchemaError(
            f"{kind} {cls.__name__} has no fields; C has no empty structs",
            file=pos.file,
            line=pos.line,
            col=pos.col,
            end_col=pos.end_col,
            hint="declare at least one annotated field, e.g. `id: i64`",
        )
    for fname in anns:
        fpos = field_pos.get(fname, pos)
        problem = check_identifier_shape(fname)
        if problem:
            raise _field_error(cls, fname, fpos, problem)
        langs = reserved_by(fname, functions_ok=True)
        if langs:
            raise _field_error(
                cls,
                fname,
                fpos,
                f"'{fname}' is a reserved word in {', '.join(langs)}",
                hint=f"rename the field, e.g. {fname}_",
            )
    for base in cls.__mro__[1:-1]:
        if is_message_class(base):
            raise SchemaError(
                f"{kind} {cls.__name__} inherits from message {base.__name__}; inheritance is not supported",
                file=pos.file,
                line=pos.line,
                col=pos.col,
                hint="nest the other message as a field",
            )
    module = sys.modules.get(cls.__module__)
    namespace = dict(vars(builtins))
    namespace.update(vars(module) if module is not None else {})
    try:
        new = attrs.define(cls, slots=True, eq=True, order=False, weakref_slot=False)
    except (ValueError, TypeError) as exc:
        raise SchemaError(
            f"{kind} {cls.__name__}: {exc}",
            file=pos.file,
            line=pos.line,
            col=pos.col,
            hint="fields with defaults must come after fields without",
        ) from None
    new.__ringgen_decl__ = _Declaration(kind, pos, field_pos, namespace)
    try:
        spec_of(new)
    except _LimitError:
        raise
    except SchemaError:
        pass  # e.g. a forward reference to a class declared later: validated on first use
    return new


@overload
def message(cls: type[T]) -> type[T]: ...
@overload
def message(cls: None = None) -> Callable[[type[T]], type[T]]: ...


@typing.dataclass_transform(field_specifiers=(attrs.field,))
def message(cls=None):
    """Declare a message class: an attrs class whose fields have ringgen types.

    A message with only fixed-size fields is *direct* (its queue slot is its C struct); one with a
    ``Str`` or ``List`` field is *bridged* (it travels serialized). The schema is validated on first use
    (``spec_of``) and the decorator itself checks names at once.

    Raises:
        SchemaError: a name is reserved or malformed, the class has no fields, or attrs refuses it.
    """
    if cls is None:
        return lambda c: _declare(c, "message")
    return _declare(cls, "message")


@typing.dataclass_transform(field_specifiers=(attrs.field,))
def state(cls=None):
    """Declare a kernel state class: fixed-size fields, held in device memory for a kernel's lifetime.

    Field defaults are the initial state. Raises ``SchemaError`` as ``message`` does.
    """
    if cls is None:
        return lambda c: _declare(c, "state")
    return _declare(cls, "state")
