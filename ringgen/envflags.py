"""Boolean environment variables, parsed in one place with one truth table.

==========================================  =====
value (stripped, any case)                  means
==========================================  =====
unset, ``""``, ``0``, ``false``, ``no``,    off
``off``
``1``, ``true``, ``yes``, ``on``, anything  on
else
==========================================  =====

``RINGGEN_DEBUG`` (logging and tracebacks) and ``RINGGEN_LINE_DIRECTIVES`` (``#line`` in generated
device code) are read through ``env_flag``; before, ``RINGGEN_DEBUG=false`` was off for the code
generator and on for the CLI.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional

__all__ = ["OFF", "env_flag"]

#: The values that mean off (after ``strip().lower()``); every other value is on.
OFF = frozenset({"", "0", "false", "no", "off"})


def env_flag(name: str, environ: Optional[Mapping[str, str]] = None) -> bool:
    """Whether the boolean environment variable ``name`` is on (the table above)."""
    value = (os.environ if environ is None else environ).get(name, "")
    return value.strip().lower() not in OFF
