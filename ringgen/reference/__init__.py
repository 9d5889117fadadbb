"""The reference semantics: the user's handler run in Python on numpy-typed values.

``records.py`` holds the host-side values of messages and state (``Record``, ``new_state``,
``to_object``; no compiler involved); ``interpreter.py`` runs a handler's rewritten copy, typed by
the DSL's checker (``ringgen.dsl``). The cpu backend and the differential tests use both. It sits
beside ``ringgen.codegen``, above ``ringgen.dsl``; the runtime may import it (docs/architecture.md).
"""
