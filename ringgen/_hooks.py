"""Calls a lower layer makes into a higher one, installed by the ``ringgen`` package itself.

``RingKernel.launch()`` (in ``kernel.py``, a declaration module below the generator) is
``rg.launch(kernel)``, which lives in ``ringgen.jit``, above the generator and the runtime. Rather
than import upward, ``kernel.py`` calls ``hooks.launch``, which ``ringgen/__init__.py`` (the
package's composition root, always imported before any of its modules) sets to a function that
imports ``ringgen.jit`` on first use. ``a >> b`` on two kernels reaches ``ringgen.graphs`` (above
``kernel.py``) the same way, through ``hooks.then``. This module imports nothing.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

#: ``launch(kernel, **options) -> KernelHandle``; set by ``ringgen/__init__.py``.
launch: Optional[Callable[..., Any]] = None

#: ``then(left, right) -> Graph`` (``left >> right``); set by ``ringgen/__init__.py``.
then: Optional[Callable[[Any, Any], Any]] = None
