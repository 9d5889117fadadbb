"""Code generation: a build unit in, file texts out.

Every target is a pure emitter ``emit(unit) -> {relative file name: text}`` listed in ``targets.TARGETS``;
``writer.write_unit`` runs them all and is the only code that touches the disk.
"""
