"""``EmitOptions``: what, besides the build unit, changes the text the emitters write.

Every option is explicit here, passed to the emitters by the writer, and part of the build cache's
key (``ringgen.jit.cache_key``), so two builds that differ only in an option never share an entry.
"""

from __future__ import annotations

from typing import Mapping, Optional

import attrs

from ..envflags import env_flag

__all__ = ["LINE_DIRECTIVES_ENV", "EmitOptions"]

#: ``RINGGEN_LINE_DIRECTIVES=1``: ``#line N "file.py"`` before every handler statement.
LINE_DIRECTIVES_ENV = "RINGGEN_LINE_DIRECTIVES"


@attrs.frozen
class EmitOptions:
    """Options of one build's emitters.

    Attributes:
        debug_line_directives: emit ``#line N "file.py"`` before every statement of the handler
            bodies of the C-family targets (c, opencl, cuda, metal), so compiler errors and
            debuggers point at the Python source. Off by default: the output then does not depend
            on where the source file is.
    """

    debug_line_directives: bool = False

    @classmethod
    def from_env(
        cls,
        environ: Optional[Mapping[str, str]] = None,
        *,
        line_directives: Optional[bool] = None,
    ) -> "EmitOptions":
        """The options a build gets: ``line_directives`` when given (``--line-directives``), else
        ``RINGGEN_LINE_DIRECTIVES`` (``ringgen.envflags`` truth table)."""
        if line_directives is None:
            line_directives = env_flag(LINE_DIRECTIVES_ENV, environ)
        return cls(debug_line_directives=bool(line_directives))

    def key(self) -> str:
        """A stable text of every option, for cache keys."""
        return ",".join(f"{f.name}={getattr(self, f.name)!r}" for f in attrs.fields(type(self)))
