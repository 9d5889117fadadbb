"""The handler language compiler: Python AST -> typed IR (``ir.Program``), with diagnostics.

``compile_program(kernels, device_functions)`` is the entry point; ``ringgen.codegen.body`` prints
the IR as C-family text, and ``reference`` runs the same handlers in Python for the CPU backend.
The modules, in the order data flows: ``resolve`` (what a global name means), ``typesys`` (types and
promotion), ``lower_expr``/``lower_call``/``lower`` (AST -> IR, with type checking), ``checks``
(allow-list, return paths), ``diagnostics`` (errors at file:line:col), ``compile`` (entry points);
``records`` and ``reference`` give the same semantics in Python.

Semantics, where Python and C differ (the generated C and the reference agree exactly on integers):

- Values are numpy scalars, with numpy 2's promotion rules: a Python literal (and ``len``, a
  ``range`` variable, arithmetic on those) is *weak* and takes the other operand's type. As an
  operand it must fit that type: a literal that does not is a compile error, a computed value that
  does not faults with RANGE_ERROR (numpy raises OverflowError). Stored into a field, a state
  element or an atomic it wraps, as a C store does. Mixing an int and a float, or a signed and an
  unsigned int of the same width, needs an explicit cast; a store may widen (i32 into i64).
- Integers wrap at their width (the C does signed arithmetic through unsigned types, never UB);
  ``//`` floors and ``%`` takes the divisor's sign; ``/`` on integers is an error; integer ``//`` or
  ``%`` by zero, an index out of range (negative indices count from the end, as in Python), a float
  that is NaN or infinite cast to an integer, and a Str/List too long for its destination are
  *faults*: the handler returns ``-Reason`` and the message is counted as rejected.
- ``math.*`` computes in f32 when its arguments are f32, else in f64 (``math.floor`` returns a float).
  ``min``/``max`` convert their arguments to one type and keep Python's tie rule.
- A local has one type for the whole function (inferred from every assignment); a local that only
  ever holds Python ints is 64-bit in C and unbounded in the reference.
- State fields change only through ``rg.atomic_*`` unless the kernel is ``ordered=True``.
"""

from .compile import compile_kernel, compile_program

__all__ = ["compile_kernel", "compile_program"]
