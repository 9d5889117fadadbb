"""The handler language compiler: Python AST -> typed IR (``ir.Program``), with diagnostics.

``compile_program(kernels, device_functions)`` is the entry point; ``ringgen.codegen.body`` prints
the IR as C-family text, and ``reference`` runs the same handlers in Python for the CPU backend.
The modules, in the order data flows: ``resolve`` (what a global name means), ``typesys`` (types,
promotion and the unification of a local's types), ``lower_expr``/``lower_call`` (expressions and
calls), ``lower_forms`` (``**``, ``in``, list literals), ``scope`` (locals and their types),
``unpack`` (tuples, ``enumerate``), ``lower`` (statements; AST -> IR, with type checking),
``checks`` (allow-list, return paths), ``diagnostics`` (errors at file:line:col, named as Python
names the construct), ``compile`` (entry points); ``records`` and ``reference`` give the same
semantics in Python. The user-facing rules are in docs/language.md.

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
- A local has one type for the whole function: declared (``acc: f32 = 0.0``) or unified over every
  assignment, Numba's way (an int literal is i64, a float literal f64: ``total = 0`` that also holds
  i16 sums is an i64); the reference casts every store to a typed local the same way. A local that
  only ever holds Python ints is 64-bit in C and unbounded in the reference.
- State fields change only through ``rg.atomic_*`` unless the kernel is ``ordered=True``.
"""

from .compile import compile_kernel, compile_program

__all__ = ["compile_kernel", "compile_program"]
