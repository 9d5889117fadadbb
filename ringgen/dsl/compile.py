"""The compiler's entry points: kernels and device functions -> an ``ir.Program``."""

from __future__ import annotations

import ast
import contextlib
import logging
import typing
from typing import Iterable, Optional

from ..errors import HandlerError, RinggenError
from ..kernel import DeviceFunction, KernelSpec
from ..schema import is_message_class
from ..types import ArrayType, ListType, ScalarType, StrType
from . import ir
from .diagnostics import Diagnostics
from .lower import FunctionLowering
from .typesys import VOID, MsgT, OutboxT, Scalar, TupleT, Type, from_field_type

__all__ = ["Compiler", "compile_kernel", "compile_program"]

log = logging.getLogger(__name__)


class Compiler:
    """Compiles kernels and the device functions they call (each once), callees first."""

    def __init__(self) -> None:
        self._device: dict[str, ir.Function] = {}
        self._device_objs: dict[str, DeviceFunction] = {}
        self._order: list[str] = []
        self._active: list[str] = []

    def device_signature(self, df: DeviceFunction, diag: Diagnostics, node: ast.AST):
        """(params, return type) of a device function, from its annotations."""
        import inspect

        params = []
        for name in inspect.signature(df.func).parameters:
            params.append((name, _value_type(df, df.hints.get(name), f"parameter '{name}'")))
        ret = df.hints.get("return")
        rt = VOID if ret is None or ret is type(None) else _value_type(df, ret, "return type")
        return params, rt

    def compile_device(self, df: DeviceFunction, calls_from: Optional[HandlerError] = None) -> None:
        name = df.__name__
        if name in self._active:
            raise calls_from
        if name in self._device:
            if self._device_objs[name] is not df:
                raise HandlerError(
                    f"two different device functions are named {name}; names must be unique",
                    file=df.source.file,
                    line=df.source.first_line,
                    hint="rename one of them (each becomes the C function rg_fn_<name>)",
                )
            return
        self._active.append(name)
        try:
            fn, calls = _lower_device(df, self.device_signature(df, None, None), self)
            for callee, (cdf, err) in sorted(calls.items()):
                self.compile_device(cdf, err)
        finally:
            self._active.pop()
        self._device[name] = fn
        self._device_objs[name] = df
        self._order.append(name)

    def compile_kernel(self, spec: KernelSpec) -> ir.Function:
        fn, calls = _lower_kernel(spec, self)
        for callee, (cdf, err) in sorted(calls.items()):
            self.compile_device(cdf, err)
        log.debug("compiled kernel %s", spec.name)
        return fn

    @property
    def device_functions(self) -> tuple:
        return tuple(self._device[n] for n in self._order)


def _value_type(df: DeviceFunction, ann, what: str) -> Type:
    """The type of a device function's parameter (a scalar; a message, an Array, a Str or a List,
    passed by pointer and read-only) or return value (a scalar, or a tuple of scalars)."""
    if isinstance(ann, ScalarType):
        return Scalar(ann)
    is_param = what != "return type"
    if is_param and is_message_class(ann) and ann.__ringgen_decl__.kind == "message":
        return MsgT(ann, ann.__name__)
    if is_param and isinstance(ann, (ArrayType, StrType, ListType)):
        return from_field_type(ann)
    if not is_param and typing.get_origin(ann) is tuple:
        elems = typing.get_args(ann)
        if len(elems) >= 2 and all(isinstance(e, ScalarType) for e in elems):
            return TupleT(tuple(Scalar(e) for e in elems))
    allowed = (
        "a scalar type (i8..u64, f32, f64, bool_), a @rg.message class, Array[T, N], Str[N] or "
        "List[T, N]"
        if is_param
        else "a scalar type (i8..u64, f32, f64, bool_), tuple[T1, T2, ...] of scalar types or None"
    )
    raise HandlerError(
        f"device function {df.__name__}: {what} must be {allowed}, not "
        f"{getattr(ann, '__qualname__', ann)!s}",
        file=df.source.file,
        line=df.source.first_line,
        hint="e.g. 'x: f32' or '-> f32'" if is_param else "e.g. '-> f32' or '-> tuple[i32, f32]'",
    )


def compile_kernel(spec: KernelSpec) -> ir.Program:
    """Compile one kernel (and the device functions it calls) into a Program."""
    return compile_program([spec], [])


def compile_program(
    kernels: Iterable[KernelSpec],
    device_functions: Iterable[DeviceFunction] = (),
    source_file: Optional[str] = None,
) -> ir.Program:
    """Compile kernels and device functions into one ``ir.Program``.

    Device functions listed but not called are compiled too (so their errors show); callees come
    before callers in the output.

    Raises:
        HandlerError: any construct outside the language, at its file, line and column.
    """
    c = Compiler()
    handlers = []
    for spec in kernels:
        with _no_internal_tracebacks(f"kernel {spec.name}", spec.source.file, spec.pos.line):
            handlers.append(c.compile_kernel(spec))
    for df in device_functions:
        with _no_internal_tracebacks(
            f"device function {df.__name__}", df.source.file, df.source.first_line
        ):
            c.compile_device(df, None)
    return ir.Program(c.device_functions, tuple(handlers), source_file)


@contextlib.contextmanager
def _no_internal_tracebacks(what: str, file: Optional[str], line: Optional[int]):
    """Turn anything but a diagnosed error into a HandlerError naming the function."""
    try:
        yield
    except RinggenError:
        raise
    except RecursionError:
        raise HandlerError(
            f"{what}: the handler is nested too deeply to compile",
            file=file,
            line=line,
            hint="split deeply nested expressions into locals",
        ) from None
    except Exception as exc:  # a compiler bug: still say where, and keep the cause for a report
        log.debug("internal error compiling %s", what, exc_info=True)
        raise HandlerError(
            f"{what}: internal compiler error ({type(exc).__name__}: {exc})",
            file=file,
            line=line,
            hint="this is a ringgen bug; please report it with this handler",
        ) from exc


def _lower_kernel(spec: KernelSpec, compiler: Compiler) -> tuple[ir.Function, dict]:
    """Lower a kernel's handler: its ``ir.Function`` and the device functions it calls (name ->
    (DeviceFunction, the error to raise if the call closes a recursion))."""
    lw = FunctionLowering(spec.func, spec.source, f"kernel {spec.name}", compiler)
    lw.kernel = spec
    params = {}
    roles = {v: k for k, v in spec.param_names.items()}
    out_params = []
    for arg in lw.node.args.args:
        role = roles[arg.arg]
        if role == "input":
            t = MsgT(spec.input, spec.input.__name__)
        elif role == "state":
            t = MsgT(spec.state, spec.state.__name__, is_state=True)
        else:
            t = OutboxT(MsgT(spec.outbox, spec.outbox.__name__))
        params[arg.arg] = ir.Var(arg.arg, t, pointer=True)
        out_params.append(ir.Param(arg.arg, t, role))
    body, locals_ = lw.run(params)
    body = lw.finish(body)
    out_t = MsgT(spec.output, spec.output.__name__) if spec.output is not None else None
    return (
        ir.Function(
            name=spec.name,
            kind="handler",
            params=tuple(out_params),
            locals=tuple(sorted(locals_.items(), key=lambda kv: kv[0])),
            body=body,
            return_type=VOID,
            file=spec.source.file,
            first_line=spec.source.first_line,
            output=out_t,
            state=params[spec.param_names["state"]].type if spec.state else None,
            input=MsgT(spec.input, spec.input.__name__),
            outbox=spec.outbox is not None,
            calls=tuple(sorted(lw.calls)),
            barriers=tuple(sorted(lw.barriers.items())),
        ),
        lw.calls,
    )


def _lower_device(df: DeviceFunction, signature, compiler: Compiler) -> tuple[ir.Function, dict]:
    """Lower a ``@rg.device`` function, given its (params, return type) signature; as
    ``_lower_kernel``, with the functions it calls."""
    lw = FunctionLowering(df.func, df.source, f"device function {df.__name__}", compiler)
    plist, ret = signature
    lw.return_type = ret
    params = {}
    for name, t in plist:
        params[name] = ir.Var(name, t, pointer=not isinstance(t, Scalar))
    body, locals_ = lw.run(params)
    body = lw.finish(body)
    return (
        ir.Function(
            name=df.__name__,
            kind="device",
            params=tuple(ir.Param(n, t, "value") for n, t in plist),
            locals=tuple(sorted(locals_.items(), key=lambda kv: kv[0])),
            body=body,
            return_type=ret,
            file=df.source.file,
            first_line=df.source.first_line,
            calls=tuple(sorted(lw.calls)),
        ),
        lw.calls,
    )
