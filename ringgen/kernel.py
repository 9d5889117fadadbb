"""``@rg.ring_kernel`` and ``@rg.device``: declaring handlers and the helpers they call.

The decorator reads the handler's annotations at once: one input message, optionally one ``@rg.state``
class and one ``rg.Outbox[T]``; the return annotation names the output message, ``Optional[Out]`` when
some paths return ``None``, or ``None`` when the kernel emits through an Outbox or only updates state.
A missing or wrong annotation is a ``HandlerError`` at the parameter's file, line and column.
The body is compiled later (``ringgen.dsl``), when a build asks for it.
"""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
import typing
from typing import Any, Callable, Generic, Optional, Protocol, TypeVar, overload

import attrs

from . import _hooks
from .causal import hlc_field
from .errors import HandlerError
from .naming import check_identifier_shape, reserved_by
from .protocol import OUTBOX_LIMIT
from .schema import SourcePos, is_message_class

__all__ = [
    "MAX_OUTBOX_LIMIT",
    "DeviceFunction",
    "KernelSpec",
    "Outbox",
    "OutboxOf",
    "device",
    "ring_kernel",
    "kernel_spec_of",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
#: A kernel's input and output message classes, for type checkers: ``RingKernel[Request, Reply]``.
InT = TypeVar("InT")
OutT = TypeVar("OutT")

DEFAULT_CAPACITY = 1024


class Outbox(Generic[T]):
    """Where a handler emits zero or more output messages: ``out.emit(Msg(...))``.

    On a device this reserves slots in the kernel's output queue; in the reference backend it collects
    the messages. A kernel that takes an Outbox returns ``None``. ``Outbox[Msg]`` allows up to
    ``OUTBOX_LIMIT`` (8) emits per input message, ``Outbox[Msg, N]`` up to N (1..``MAX_OUTBOX_LIMIT``);
    one more emit faults the message (``FAULT_OUTBOX``) on every backend and the reference.
    """

    def __class_getitem__(cls, params):
        if isinstance(params, tuple) and len(params) == 2:
            return OutboxOf(params[0], params[1])  # checked where the kernel is declared
        return super().__class_getitem__(params)

    __slots__ = ("_items", "_limit")

    def __init__(self, limit: int = 1 << 30) -> None:
        self._items: list[T] = []
        self._limit = limit

    def emit(self, message: T) -> None:
        """Queue ``message`` for the host (or, later, for another kernel)."""
        self._items.append(message)

    def drain(self) -> list[T]:
        items, self._items = self._items, []
        return items


@attrs.frozen
class OutboxOf:
    """``Outbox[Msg, N]``: an Outbox with its own emit limit ``N``."""

    elem: Any
    limit: Any


#: The largest per-kernel emit limit ``Outbox[Msg, N]`` accepts: each backend reserves N output
#: slots per message in flight (and the Metal and C skeletons hold N messages per work-item).
MAX_OUTBOX_LIMIT = 256


@attrs.frozen
class SourceInfo:
    """A function's source, as the compiler reads it: text, file, and first line."""

    text: str
    file: Optional[str]
    first_line: int
    col_offset: int  # the indentation removed by dedent


def _source_of(func: Callable) -> SourceInfo:
    try:
        lines, first = inspect.getsourcelines(func)
        file = inspect.getsourcefile(func)
    except (OSError, TypeError) as exc:
        raise HandlerError(
            f"cannot read the source of {func.__qualname__}: {exc}",
            hint="declare handlers in a .py file, not in an interactive session or exec()",
        ) from None
    raw = "".join(lines)
    text = textwrap.dedent(raw)
    indent = len(lines[0]) - len(lines[0].lstrip())
    return SourceInfo(text, file, first, indent)


def _func_node(info: SourceInfo) -> ast.FunctionDef:
    tree = ast.parse(info.text)
    node = tree.body[0]
    assert isinstance(node, ast.FunctionDef)
    return node


def _pos(info: SourceInfo, node: ast.AST) -> SourcePos:
    return SourcePos(
        info.file,
        info.first_line + node.lineno - 1,
        node.col_offset + info.col_offset,
        (node.end_col_offset or node.col_offset) + info.col_offset,
    )


def _error(info: SourceInfo, node: ast.AST, message: str, hint: str | None = None) -> HandlerError:
    p = _pos(info, node)
    return HandlerError(message, file=p.file, line=p.line, col=p.col, end_col=p.end_col, hint=hint)


def _resolve_hints(func: Callable, info: SourceInfo, node: ast.FunctionDef) -> dict[str, Any]:
    module = sys.modules.get(func.__module__)
    ns = dict(vars(module)) if module else {}
    closure = inspect.getclosurevars(func)
    ns.update(closure.nonlocals)
    out: dict[str, Any] = {}
    anns = dict(func.__annotations__)
    arg_nodes = {a.arg: a for a in node.args.args}
    for name, ann in anns.items():
        if isinstance(ann, str):
            try:
                ann = eval(ann, ns)  # noqa: S307 - the user's own annotation
            except Exception as exc:
                where = arg_nodes[name].annotation if name in arg_nodes else node.returns
                raise _error(
                    info, where or node, f"cannot resolve annotation {ann!r}: {exc}"
                ) from None
        out[name] = ann
    return out


def _unwrap_optional(ann: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(ann)
    if origin is typing.Union or type(ann).__name__ == "UnionType":
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(ann)) == 2:
            return args[0], True
    return ann, False


@attrs.frozen
class KernelSpec:
    """A declared ring kernel: its handler, message types and options.

    ``input`` is the input message class; ``output`` the output message class or None; ``may_skip``
    is True when the handler may return None for some messages; ``state`` the ``@rg.state`` class or
    None; ``outbox`` the Outbox element class or None (then ``output`` is that class too, and the
    handler emits zero or more per message). ``param_names`` maps roles ("input", "state", "outbox")
    to the handler's parameter names. ``outbox_limit`` is the most outputs one input message may
    produce: N of ``Outbox[Msg, N]``, ``OUTBOX_LIMIT`` for ``Outbox[Msg]``, 1 without an Outbox.
    """

    name: str
    func: Callable = attrs.field(eq=False)
    input: type
    output: Optional[type]
    may_skip: bool
    state: Optional[type]
    outbox: Optional[type]
    param_names: dict = attrs.field(eq=False)
    capacity: int
    ordered: bool
    source: SourceInfo = attrs.field(eq=False)
    pos: SourcePos = attrs.field(eq=False)
    outbox_limit: int = 1
    order: str = "fifo"

    @property
    def uses_outbox(self) -> bool:
        return self.outbox is not None

    @property
    def module(self) -> str:
        return self.func.__module__


def _declare_kernel(
    func: Callable, *, name: Optional[str], capacity: int, ordered: bool, order: str = "fifo"
) -> KernelSpec:
    info = _source_of(func)
    node = _func_node(info)
    kname = name or func.__name__
    # a kernel's name appears only inside longer identifiers (rg_handle_<name>): a library
    # function of the same name cannot clash with it
    langs = reserved_by(kname, functions_ok=True)
    problem = check_identifier_shape(kname) or (
        f"'{kname}' is a reserved word in {', '.join(langs)}" if langs else None
    )
    if problem:
        raise _error(
            info, node, f"kernel name {kname!r}: {problem}", hint="pass name=... to @rg.ring_kernel"
        )
    if not isinstance(capacity, int) or capacity < 2 or capacity & (capacity - 1):
        raise _error(
            info,
            node,
            f"kernel {kname}: capacity must be a power of two >= 2, got {capacity!r}",
            hint="e.g. capacity=1024",
        )
    if node.args.vararg or node.args.kwarg or node.args.kwonlyargs or node.args.posonlyargs:
        raise _error(
            info,
            node,
            f"kernel {kname}: *args, **kwargs and keyword-only parameters are not supported",
        )
    if node.args.defaults:
        raise _error(
            info, node.args.defaults[0], f"kernel {kname}: parameters cannot have defaults"
        )
    hints = _resolve_hints(func, info, node)
    roles: dict[str, str] = {}
    input_cls = state_cls = outbox_cls = None
    outbox_limit = 1
    for i, arg in enumerate(node.args.args):
        if arg.annotation is None:
            raise _error(
                info,
                arg,
                f"kernel {kname}: parameter '{arg.arg}' has no type annotation",
                hint="annotate it with a @rg.message class (the input), a @rg.state class, "
                "or rg.Outbox[Msg]",
            )
        ann = hints[arg.arg]
        origin = typing.get_origin(ann)
        if origin is Outbox or isinstance(ann, OutboxOf):
            elem, limit = (
                (ann.elem, ann.limit)
                if isinstance(ann, OutboxOf)
                else (
                    typing.get_args(ann)[0],
                    OUTBOX_LIMIT,
                )
            )
            if (
                not isinstance(limit, int)
                or isinstance(limit, bool)
                or not 1 <= limit <= MAX_OUTBOX_LIMIT
            ):
                raise _error(
                    info,
                    arg.annotation,
                    f"kernel {kname}: the Outbox emit limit must be an integer from 1 to "
                    f"{MAX_OUTBOX_LIMIT}, not {limit!r}",
                    hint=f"e.g. rg.Outbox[Msg, 16]; plain rg.Outbox[Msg] allows {OUTBOX_LIMIT}",
                )
            if not is_message_class(elem) or elem.__ringgen_decl__.kind != "message":
                raise _error(
                    info,
                    arg.annotation,
                    f"kernel {kname}: Outbox element must be a @rg.message class",
                )
            if outbox_cls is not None:
                raise _error(info, arg, f"kernel {kname}: only one Outbox parameter is allowed")
            outbox_cls, roles["outbox"], outbox_limit = elem, arg.arg, limit
        elif ann is Outbox:
            raise _error(
                info,
                arg.annotation,
                f"kernel {kname}: Outbox needs its message type",
                hint="write rg.Outbox[Msg]",
            )
        elif is_message_class(ann) and ann.__ringgen_decl__.kind == "state":
            if state_cls is not None:
                raise _error(info, arg, f"kernel {kname}: only one state parameter is allowed")
            state_cls, roles["state"] = ann, arg.arg
        elif is_message_class(ann):
            if i != 0:
                raise _error(
                    info, arg, f"kernel {kname}: the input message must be the first parameter"
                )
            input_cls, roles["input"] = ann, arg.arg
        else:
            raise _error(
                info,
                arg.annotation,
                f"kernel {kname}: parameter '{arg.arg}' has unsupported type "
                f"{getattr(ann, '__qualname__', ann)!s}",
                hint="parameters are the input message, a @rg.state class, and rg.Outbox[Msg]",
            )
    if input_cls is None:
        raise _error(
            info,
            node,
            f"kernel {kname}: the first parameter must be the input message",
            hint="e.g. def handler(req: Request) -> Response",
        )
    if node.returns is None:
        raise _error(
            info,
            node,
            f"kernel {kname}: missing return annotation",
            hint="annotate '-> Response', '-> Optional[Response]' or '-> None' (with an Outbox)",
        )
    ret, may_skip = _unwrap_optional(hints["return"])
    output_cls = None
    if ret is None or ret is type(None):
        output_cls = None
    elif is_message_class(ret) and ret.__ringgen_decl__.kind == "message":
        output_cls = ret
    else:
        raise _error(
            info,
            node.returns,
            f"kernel {kname}: return type must be a @rg.message class, "
            f"Optional of one, or None",
            hint="e.g. '-> Response'",
        )
    if output_cls is not None and outbox_cls is not None:
        raise _error(
            info,
            node.returns,
            f"kernel {kname}: a kernel has one output queue; return a message "
            "or take an Outbox, not both",
            hint="annotate '-> None' and emit through the Outbox",
        )
    spec = KernelSpec(
        name=kname,
        func=func,
        input=input_cls,
        output=output_cls or outbox_cls,
        may_skip=may_skip or outbox_cls is not None,
        state=state_cls,
        outbox=outbox_cls,
        param_names=roles,
        capacity=capacity,
        ordered=ordered,
        source=info,
        pos=_pos(info, node),
        outbox_limit=outbox_limit,
        order=order,
    )
    _check_order(spec, info, node)
    return spec


#: The values of ``@rg.ring_kernel(order=...)``: ``fifo`` (each producer's order) and ``causal``.
ORDERS = ("fifo", "causal")


def _check_order(spec: KernelSpec, info: Any, node: Any) -> None:
    if spec.order not in ORDERS:
        raise _error(
            info,
            node,
            f"kernel {spec.name}: order={spec.order!r} is not one of {', '.join(ORDERS)}",
        )
    if spec.order == "causal" and hlc_field(spec.input) is None:
        raise _error(
            info,
            node,
            f"kernel {spec.name}: order='causal' needs a stamp on its input, but message class "
            f"{spec.input.__module__}.{spec.input.__qualname__} has no rg.HLC field",
            hint=f"declare a field `stamp: rg.HLC` in {spec.input.__name__}",
        )


class RingKernel(Generic[InT, OutT]):
    """A declared ring kernel. Calling it runs the handler in Python (as the reference backend does).

    Generic over its input and output message classes: ``@rg.ring_kernel`` on
    ``def f(m: Request) -> Reply`` (or ``-> Optional[Reply]``, or with ``out: rg.Outbox[Reply]``) is a
    ``RingKernel[Request, Reply]`` to a type checker, and ``rg.launch`` of it a
    ``KernelHandle[Request, Reply]``. A kernel without output is ``RingKernel[Request, None]``.
    """

    def __init__(self, spec: KernelSpec) -> None:
        self.spec = spec
        self.__wrapped__ = spec.func
        self.__name__ = spec.name
        self.__doc__ = spec.func.__doc__
        self.__module__ = spec.func.__module__
        self.__qualname__ = spec.func.__qualname__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.spec.func(*args, **kwargs)

    def __repr__(self) -> str:
        out = self.spec.output.__name__ if self.spec.output else "None"
        return f"<ring_kernel {self.spec.name}: {self.spec.input.__name__} -> {out}>"

    def launch(self, **options: Any) -> Any:
        """Build this kernel into the cache and launch it (``rg.launch(kernel, **options)``).

        Returns the running ``KernelHandle``. Type checkers see ``Any`` here (naming the handle's
        class would import the runtime into this layer); ``rg.launch(kernel)`` is typed
        ``KernelHandle[In, Out]``.
        """
        # rg.launch lives in ringgen.jit, above this module: ringgen/__init__.py installs it as
        # _hooks.launch, so this module imports nothing upward (docs/architecture.md, "Layers").
        return _hooks.launch(self, **options)

    # ---- graphs (docs/graphs.md): ``a >> b`` is the pipeline a -> b -------------------------

    def __rshift__(self, other: Any) -> Any:
        """``self >> other``: a graph where this kernel feeds ``other`` (a kernel or a graph).

        Raises:
            BuildError: ``other``'s input type is not this kernel's output type (``ringgen.graphs``).
        """
        # ringgen.graphs composes kernels, so it sits above this module: reached through _hooks,
        # as launch() reaches ringgen.jit
        return _hooks.then(self, other)

    def __rrshift__(self, other: Any) -> Any:
        return _hooks.then(other, self)


class DeviceFunction:
    """A ``@rg.device`` helper: callable from handlers (compiled with them) and from Python."""

    def __init__(self, func: Callable) -> None:
        self.func = func
        self.source = _source_of(func)
        self.__wrapped__ = func
        self.__name__ = func.__name__
        self.__doc__ = func.__doc__
        self.__module__ = func.__module__
        self.__qualname__ = func.__qualname__
        node = _func_node(self.source)
        langs = reserved_by(func.__name__, functions_ok=True)  # emitted as rg_fn_<name>
        problem = check_identifier_shape(func.__name__) or (
            f"reserved word in {', '.join(langs)}" if langs else None
        )
        if problem:
            raise _error(self.source, node, f"device function {func.__name__!r}: {problem}")
        for arg in node.args.args:
            if arg.annotation is None:
                raise _error(
                    self.source,
                    arg,
                    f"device function {func.__name__}: parameter '{arg.arg}' "
                    "has no type annotation",
                    hint="annotate it, e.g. 'x: f32'",
                )
        if node.returns is None:
            raise _error(
                self.source,
                node,
                f"device function {func.__name__}: missing return annotation",
                hint="annotate the result, e.g. '-> f32'",
            )
        self.hints = _resolve_hints(func, self.source, node)

    def __call__(self, *args, **kwargs):
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<device function {self.__qualname__}>"


class _KernelDecorator(Protocol):
    """What ``@rg.ring_kernel(...)`` with options returns: the decorator, typed as the bare one."""

    @overload
    def __call__(self, func: Callable[[InT, Outbox[OutT]], None], /) -> RingKernel[InT, OutT]: ...
    @overload
    def __call__(
        self, func: Callable[[InT, Outbox[OutT], Any], None], /
    ) -> RingKernel[InT, OutT]: ...
    @overload
    def __call__(
        self, func: Callable[[InT, Any, Outbox[OutT]], None], /
    ) -> RingKernel[InT, OutT]: ...
    @overload
    def __call__(self, func: Callable[[InT], None], /) -> RingKernel[InT, None]: ...
    @overload
    def __call__(self, func: Callable[[InT, Any], None], /) -> RingKernel[InT, None]: ...
    @overload
    def __call__(self, func: Callable[[InT], Optional[OutT]], /) -> RingKernel[InT, OutT]: ...
    @overload
    def __call__(self, func: Callable[[InT, Any], Optional[OutT]], /) -> RingKernel[InT, OutT]: ...


# The overloads tell a type checker the kernel's message classes from the handler's annotations:
# an Outbox[Out] parameter (in any of the places it may stand), else the return annotation.
@overload
def ring_kernel(func: Callable[[InT, Outbox[OutT]], None], /) -> RingKernel[InT, OutT]: ...
@overload
def ring_kernel(func: Callable[[InT, Outbox[OutT], Any], None], /) -> RingKernel[InT, OutT]: ...
@overload
def ring_kernel(func: Callable[[InT, Any, Outbox[OutT]], None], /) -> RingKernel[InT, OutT]: ...
@overload
def ring_kernel(func: Callable[[InT], None], /) -> RingKernel[InT, None]: ...
@overload
def ring_kernel(func: Callable[[InT, Any], None], /) -> RingKernel[InT, None]: ...
@overload
def ring_kernel(func: Callable[[InT], Optional[OutT]], /) -> RingKernel[InT, OutT]: ...
@overload
def ring_kernel(func: Callable[[InT, Any], Optional[OutT]], /) -> RingKernel[InT, OutT]: ...
@overload
def ring_kernel(
    func: None = None,
    *,
    name: Optional[str] = None,
    capacity: int = DEFAULT_CAPACITY,
    ordered: bool = False,
    order: str = "fifo",
) -> _KernelDecorator: ...


def ring_kernel(
    func: Optional[Callable[..., Any]] = None,
    *,
    name: Optional[str] = None,
    capacity: int = DEFAULT_CAPACITY,
    ordered: bool = False,
    order: str = "fifo",
) -> Any:
    """Declare a ring kernel from a typed handler.

    Args:
        name: the kernel's name in generated code (default: the function's name).
        capacity: slots in the input and output queues (a power of two).
        ordered: process one message at a time in arrival order (actor semantics); allows plain
            writes to state fields.
        order: ``"fifo"`` (default: each producer's messages in its order, producers interleaved
            as they come) or ``"causal"`` (in a graph, messages from several producers in their
            hybrid-logical-clock order; the input class needs an ``rg.HLC`` field; docs/graphs.md).

    Raises:
        HandlerError: an annotation is missing or wrong, or an option is invalid.
    """

    def wrap(f: Callable[..., Any]) -> RingKernel[Any, Any]:
        return RingKernel(
            _declare_kernel(f, name=name, capacity=capacity, ordered=ordered, order=order)
        )

    return wrap(func) if func is not None else wrap


def device(func: F) -> F:
    """Declare a helper callable from handlers; it is compiled into every kernel that calls it."""
    return DeviceFunction(func)  # type: ignore[return-value]


def kernel_spec_of(obj: Any) -> KernelSpec:
    """The ``KernelSpec`` of a ``@rg.ring_kernel`` (raises ``TypeError`` for anything else)."""
    if isinstance(obj, RingKernel):
        return obj.spec
    raise TypeError(f"{obj!r} is not a @rg.ring_kernel")
