"""What a generated ``runtime.py`` is made of: one ``KernelLauncher`` per kernel of the package.

A launcher knows where its kernel was declared (the module's import name, and the module's file
relative to the folder it is imported from) and which package was generated from it. On ``launch``
it imports the user's module — by name, or, when that name is not importable (a fresh clone run from
another folder), by finding the file in a folder above the generated package — finds the kernel in it
and opens it on a backend with the package's codecs.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

from ..errors import BuildError
from ..importer import import_target
from .backends import open_kernel
from .base import KernelHandle

__all__ = ["KernelLauncher", "import_user_module"]


def import_user_module(module: str, source_file: str, package_dir: os.PathLike | str) -> ModuleType:
    """Import the module a package was generated from.

    Tries the import name first; if that module cannot be found, looks for ``source_file`` (a path
    relative to the import root, e.g. ``examples/vector_add.py``) in each folder above
    ``package_dir`` and imports it from there (``ringgen.importer.import_target`` puts its root on
    ``sys.path``).

    Raises:
        BuildError: neither the name nor the file can be found, or importing fails.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if not (exc.name and module.startswith(exc.name)):
            raise  # the module exists; something it imports is missing
    for folder in Path(package_dir).resolve().parents:
        candidate = folder / source_file
        if candidate.is_file():
            return import_target(str(candidate))
    raise BuildError(
        f"cannot import {module!r}, the module this package was generated from, and "
        f"{source_file} is in no folder above {package_dir}",
        hint=f"run from the folder that holds {source_file.split('/')[0]}, or add it to PYTHONPATH",
    )


class KernelLauncher:
    """Launches one kernel of a generated package: ``runtime.<kernel>.launch(backend="auto")``.

    Args:
        kernel: the kernel's name (as in generated code).
        module: the import name of the module declaring it.
        source_file: that module's file, relative to its import root.
        package: the generated package's module name (``__package__`` of runtime.py).
        package_dir: the generated package's folder.
    """

    def __init__(
        self,
        *,
        kernel: str,
        module: str,
        source_file: str,
        package: str,
        package_dir: os.PathLike | str,
    ) -> None:
        self.kernel = kernel
        self.module = module
        self.source_file = source_file
        self.package = package
        self.package_dir = str(package_dir)
        self._spec: Optional[Any] = None

    @property
    def spec(self):
        """The kernel's ``KernelSpec``, from the user's module (imported on first use)."""
        if self._spec is None:
            from ..kernel import RingKernel

            mod = import_user_module(self.module, self.source_file, self.package_dir)
            found = [
                v
                for v in vars(mod).values()
                if isinstance(v, RingKernel) and v.spec.name == self.kernel
            ]
            if not found:
                raise BuildError(
                    f"module {self.module} declares no ring kernel {self.kernel!r}; the generated "
                    f"package {self.package_dir} is stale",
                    hint=f"rebuild it: ringgen build {self.source_file}",
                )
            self._spec = found[0].spec
        return self._spec

    def launch(self, backend: str = "auto", **options: Any) -> KernelHandle:
        """Launch the kernel and return its running ``KernelHandle`` (a context manager).

        Args:
            backend: "auto" (cuda, then opencl, then cpu; ``RINGGEN_BACKEND`` replaces auto),
                "cpu", "opencl" or "cuda".
            options: launch options, e.g. ``capacity=4096`` (docs/runtime.md).

        Raises:
            BackendUnavailableError: the backend is unknown or absent.
            BuildError: the user's module cannot be imported or no longer declares the kernel.
        """
        spec = self.spec
        serializers = importlib.import_module(f"{self.package}.serializers")
        return open_kernel(spec, self.package_dir, backend, codecs=serializers.CODECS, **options)

    def __repr__(self) -> str:
        return f"<KernelLauncher {self.kernel} from {self.module}>"
