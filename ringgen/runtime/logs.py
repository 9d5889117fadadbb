"""The runtime's loggers: children of ``ringgen``, each record carrying the kernel it is about.

Every runtime module logs through ``log = kernel_logger(__name__)`` (``ringgen.runtime.cpu``,
``ringgen.runtime.termination``, ...), so one ``logging.getLogger("ringgen")`` configures them all.
A record about a kernel passes its name as ``extra={"kernel": name}``; every record of these loggers
has the attribute ``kernel`` (``"-"`` when it is about no kernel in particular, e.g. a probe), so a
format string may always use ``%(kernel)s``::

    logging.basicConfig(format="%(name)s [%(kernel)s] %(message)s", level=logging.DEBUG)

The library adds no handler: without configuration, warnings and errors reach Python's last-resort
handler on stderr, as for any library.
"""

from __future__ import annotations

import logging
from typing import Any, MutableMapping

__all__ = ["NO_KERNEL", "KernelLogger", "kernel_logger"]

#: The ``kernel`` attribute of a record about no kernel in particular.
NO_KERNEL = "-"


class KernelLogger(logging.LoggerAdapter):
    """A module logger whose records always carry ``kernel`` (the caller's, else ``NO_KERNEL``)."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        extra = dict(kwargs.get("extra") or {})
        extra.setdefault("kernel", NO_KERNEL)
        kwargs["extra"] = extra
        return msg, kwargs


def kernel_logger(name: str) -> KernelLogger:
    """The logger of module ``name`` (a child of ``ringgen``), as a ``KernelLogger``."""
    return KernelLogger(logging.getLogger(name), {})
