"""ringgen's version: a leaf module, so that the modules stamping it into their output import it
without importing the ``ringgen`` package (whose lazy exports reach every layer)."""

__version__ = "0.1.0"
