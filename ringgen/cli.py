"""``ringgen``: build, inspect, check, list devices, watch kernels. The only module in ringgen that
prints (``ringgen top`` draws its table through ``ringgen.top``).

Every error ringgen diagnoses (a ``RinggenError``) and every bad argument exits with status 2 and one
message on stderr, without a traceback; set ``RINGGEN_DEBUG=1`` to see the traceback as well.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
import traceback
from pathlib import Path
from types import ModuleType
from typing import Optional, Sequence

from . import targets as registry
from ._version import __version__
from .envflags import env_flag
from .errors import RinggenError
from .textviews import (
    format_table,
    graph_block,
    left_out_warnings,
    message_block,
    strategy_block,
)

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1  # ran, and something it checked failed
EXIT_USAGE = 2  # bad input: a bad argument, declaration, path or package

_MAIN_HELP = """\
ringgen turns Python type declarations into persistent GPU ring kernels.

Declare messages as attrs classes with @rg.message and handlers with @rg.ring_kernel in a Python
module; `ringgen build` emits, for each module, a package with the C struct layouts
(<name>_types.h), host serializers (serializers.py), a build manifest (manifest.json) and the
kernel sources of every target ringgen has:
  {sources}.
"""

_MAIN_EPILOG = """\
commands:
  build     generate a package from a module:     ringgen build examples/vector_add.py -o generated
  inspect   show layouts, queues and kernels:     ringgen inspect generated/vector_add
  check     compile every generated source:       ringgen check generated/vector_add
  devices   list backends and devices:            ringgen devices
  top       watch a process's kernels live:       ringgen top --port 9464

Run `ringgen COMMAND --help` for a command's options and examples.

environment:
  RINGGEN_DEBUG=1      log debug messages and show tracebacks on errors (output unchanged)
  RINGGEN_LINE_DIRECTIVES=1  #line directives in generated device code (build --line-directives)
  RINGGEN_BACKEND      default backend for launches ({backends}, auto)
  RINGGEN_CACHE_DIR    where rg.launch keeps its build cache

exit status: 0 success, 1 a check or build step failed, 2 bad input (arguments, declarations, paths).
"""

_BUILD_HELP = """\
Import each module (a .py path, a dotted module name, or a directory: the *.py files directly in it,
__init__.py aside), collect its @rg.message and @rg.state classes, @rg.ring_kernel handlers and
@rg.device helpers, and write one package per module into DIR/<name>/. Dotted names are found from
the current directory first, as with `python -m`. A file inside a package folder is imported by its
dotted name (examples/vector_add.py -> examples.vector_add). Unchanged files are not rewritten; files
an earlier build wrote and this one does not are removed, unless they were edited since. A folder
that is not empty and was not built by ringgen is refused (use --force); nothing is written when
any module fails. A kernel that a target cannot express (Metal has no f64) is left out of that
target's source and reported on stderr.

Importing a module runs it, as `python -c "import module"` would: its top-level code executes with
your permissions. Build only modules you would run.
"""

_BUILD_EPILOG = """\
examples:
  ringgen build examples/vector_add.py -o generated
  ringgen build examples.vector_add -o /tmp/out
  ringgen build examples/*.py -o generated          (one package per module)
  ringgen build examples -o generated               (every module in the folder)
  ringgen build my_kernels.py --name kernels -o build
"""

_INSPECT_HELP = """\
Read a generated package's manifest.json (nothing is imported) and print, per message, a table of
its fields (type, offset, size, alignment) with totals and whether it is direct (its queue slot is
its C struct) or bridged (it travels serialized); then its queues, kernels, graphs of kernels (each
graph's stages and edges) and files.
"""

_INSPECT_EPILOG = """\
examples:
  ringgen inspect generated/vector_add
  ringgen inspect generated/vector_add --message AddRequest
  ringgen inspect generated/vector_add --source header      (print the file a target emitted)
  ringgen inspect generated/vector_add --json               (the manifest itself)
"""

_CHECK_HELP = """\
Compile every file of a generated package with each toolchain present and report, per file and
toolchain, ok, failed (with the compiler's message) or skipped (with the reason):
  <name>_types.h   gcc -std=c99 -pedantic -Wall -Wextra -Werror, g++ -std=c++17, nvcc -arch=sm_90, OpenCL
  .c               gcc -std=c99 -D_POSIX_C_SOURCE=199309L -Wall -Wextra -Werror
  .cu              nvcc -arch=sm_90
  .cl              PyOpenCL on the first OpenCL platform (PoCL in CI)
  .metal           ringgen.metal_shim (C++ against a shim of Metal's headers)
  .py, manifest    Python's compiler, the manifest schema
"""

_CHECK_EPILOG = """\
examples:
  ringgen check generated/vector_add
  ringgen check generated/*/            (several packages)

exit status: 0 when nothing failed (skips are fine), 1 when any check failed.
"""

_DEVICES_HELP = """\
List the backends ringgen can launch kernels on, in the order `auto` tries them:
  {backends}
and the devices of each, as each backend's probe finds them: CUDA (through PyCUDA), OpenCL (through
PyOpenCL; persistent mode where the device offers fine-grained SVM with atomics, relaunch mode
elsewhere), the native C backend (when a C compiler is present) and the CPU reference backend,
which is always present.
"""

_DEVICES_EPILOG = """\
examples:
  ringgen devices
  ringgen devices --json
"""


_TOP_HELP = """\
Show the kernels a process serves with rg.serve_metrics (docs/observability.md), read from its
metrics endpoint: lifecycle, messages handled per second, queue depths, p50/p99 latency (when the
backend measures it), handler faults and rejections. The table refreshes in place every --interval
seconds until Ctrl-C; --once prints one table (without messages/s, which needs two reads) and exits,
with status 1 when the endpoint cannot be read. Needs rich and prometheus-client:
pip install 'ringgen[top]'.
"""

_TOP_EPILOG = """\
examples:
  ringgen top --port 9464
  ringgen top --url http://127.0.0.1:9464/metrics --interval 0.5
  ringgen top --port 9464 --once
"""


class _UsageError(Exception):
    """Bad input found by the CLI itself (not by the library)."""


class _Parser(argparse.ArgumentParser):
    """argparse with our exit status for bad arguments and a pointer to --help."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n(see `{self.prog} --help`)\n")


def _help_words() -> dict[str, str]:
    """The backend names the help texts list, read from ``ringgen.targets``."""
    launchable = [t.name for t in registry.auto_order() if t.loader is not None]
    sources = [f"{t.dialect} ({t.suffix})" for t in registry.TARGETS if t.emitter and t.suffix]
    return {"backends": ", ".join(launchable), "sources": ", ".join(sources)}


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    words = _help_words()
    p = _Parser(
        prog="ringgen",
        description=_MAIN_HELP.format(**words),
        epilog=_MAIN_EPILOG.format(**words),
        formatter_class=fmt,
    )
    p.add_argument("--version", action="version", version=f"ringgen {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log what ringgen does (to stderr)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    b = sub.add_parser(
        "build",
        help="generate a package from a module",
        description=_BUILD_HELP,
        epilog=_BUILD_EPILOG,
        formatter_class=fmt,
    )
    b.add_argument(
        "targets", nargs="+", metavar="PATH_OR_MODULE", help="a .py file or a dotted module name"
    )
    b.add_argument(
        "-o",
        "--out",
        default="generated",
        metavar="DIR",
        help="output folder; each module becomes DIR/<name>/ (default: generated)",
    )
    b.add_argument(
        "--name",
        help="package name (default: the module's last name component); "
        "only with a single module",
    )
    b.add_argument(
        "--force",
        action="store_true",
        help="build into a folder that is not empty and was not built by ringgen (nothing there "
        "is deleted; files with ringgen's names are overwritten)",
    )
    b.add_argument(
        "--line-directives",
        action="store_true",
        default=None,
        help='emit #line N "file.py" before every handler statement of the device sources, so '
        "compiler errors point at the Python source (default: $RINGGEN_LINE_DIRECTIVES)",
    )

    i = sub.add_parser(
        "inspect",
        help="show a generated package's layouts, queues and kernels",
        description=_INSPECT_HELP,
        epilog=_INSPECT_EPILOG,
        formatter_class=fmt,
    )
    i.add_argument("package", metavar="DIR", help="a folder written by `ringgen build`")
    i.add_argument("--message", metavar="NAME", help="show only this message")
    i.add_argument(
        "--source",
        metavar="TARGET_OR_FILE",
        help="print the file a target emitted (header, serializers, cuda, ...) or a file name",
    )
    i.add_argument("--json", action="store_true", help="print the manifest as JSON")

    c = sub.add_parser(
        "check",
        help="compile every generated source with the toolchains present",
        description=_CHECK_HELP,
        epilog=_CHECK_EPILOG,
        formatter_class=fmt,
    )
    c.add_argument("packages", nargs="+", metavar="DIR", help="folders written by `ringgen build`")

    d = sub.add_parser(
        "devices",
        help="list backends and devices",
        description=_DEVICES_HELP.format(**words),
        epilog=_DEVICES_EPILOG,
        formatter_class=fmt,
    )
    d.add_argument("--json", action="store_true", help="print the report as JSON")

    t = sub.add_parser(
        "top",
        help="watch the kernels a process serves with rg.serve_metrics",
        description=_TOP_HELP,
        epilog=_TOP_EPILOG,
        formatter_class=fmt,
    )
    where = t.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="the metrics page, e.g. http://127.0.0.1:9464/metrics")
    where.add_argument(
        "--port", type=int, help="the port of rg.serve_metrics on this machine (127.0.0.1)"
    )
    t.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between refreshes (default: 1)",
    )
    t.add_argument("--once", action="store_true", help="print one table and exit")
    return p


# ---- build -------------------------------------------------------------------------------------


def _build_targets(targets: Sequence[str]) -> list[tuple[str, bool]]:
    """The modules to build, each with whether it came from a directory.

    A directory stands for the ``*.py`` files directly in it (sorted; ``__init__.py`` is the package
    itself, not a module of kernels).

    Raises:
        _UsageError: a directory holds no module to build.
    """
    out: list[tuple[str, bool]] = []
    for target in targets:
        path = Path(target)
        if not path.is_dir():
            out.append((target, False))
            continue
        modules = sorted(p for p in path.glob("*.py") if p.name != "__init__.py" and p.is_file())
        if not modules:
            raise _UsageError(
                f"{target}: is a directory with no Python module in it to build "
                "(ringgen build takes the *.py files directly in a directory, __init__.py aside); "
                "pass a .py file or a dotted module name"
            )
        out += [(str(p), True) for p in modules]
    return out


def _declares_something(module: ModuleType) -> bool:
    """Whether ``module`` defines a message or state class, a ring kernel or a graph of its own."""
    # imported on use, as every command's machinery is: `ringgen --help` stays quick
    from .graphs import Graph
    from .kernel import RingKernel
    from .schema import is_message_class

    return any(
        (isinstance(obj, Graph) and obj.module == module.__name__)
        or (
            getattr(obj, "__module__", None) == module.__name__
            and (isinstance(obj, RingKernel) or is_message_class(obj))
        )
        for obj in vars(module).values()
    )


def _modules_to_build(targets: list[tuple[str, bool]]) -> list[str]:
    """The targets to collect: a module found in a directory that declares nothing (a script next
    to the kernels, such as examples/demo.py) is skipped with a note on stderr; given by name, it
    is an error (``collect`` says so)."""
    from .build import import_target

    out = []
    for target, from_directory in targets:
        if from_directory and not _declares_something(import_target(target)):
            print(
                f"ringgen build: {target}: skipped, it declares no @rg.message, @rg.state, "
                "@rg.ring_kernel or graph",
                file=sys.stderr,
            )
            continue
        out.append(target)
    return out


def _cmd_build(args: argparse.Namespace) -> int:
    from .build import collect
    from .codegen.options import EmitOptions
    from .codegen.writer import write_units

    targets = _build_targets(args.targets)
    if args.name and len(targets) > 1:
        raise _UsageError(f"--name needs a single module (got {len(targets)})")
    # Like `python -m`: a dotted name is found from the current directory first.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    # every module is collected, emitted and checked before anything is written: all or nothing
    units = [collect(target, name=args.name) for target in _modules_to_build(targets)]
    options = EmitOptions.from_env(line_directives=args.line_directives)
    for unit, pkg in zip(units, write_units(units, args.out, force=args.force, options=options)):
        files = sorted(p.name for p in pkg.iterdir() if p.is_file())
        n = len(unit.graphs)
        graphs = f", {n} graph{'s' if n > 1 else ''}" if n else ""
        print(
            f"built {unit.module} -> {pkg}/ ({len(unit.messages)} messages, "
            f"{len(unit.kernels)} kernels{graphs}): {', '.join(files)}"
        )
        for line in left_out_warnings(pkg):
            print(line, file=sys.stderr)
    return EXIT_OK


# ---- inspect -----------------------------------------------------------------------------------


def _load_manifest(pkg: Path) -> dict:
    path = pkg / "manifest.json"
    if pkg.is_file():
        hint = ""
        if pkg.suffix == ".py":
            hint = (
                f"; build it first: `ringgen build {pkg} -o generated`, then pass "
                f"generated/{pkg.stem}"
            )
        raise _UsageError(
            f"{pkg}: expected a generated package directory (with manifest.json), got a file{hint}"
        )
    if not pkg.is_dir():
        raise _UsageError(f"{pkg}: no such folder")
    if not path.is_file():
        raise _UsageError(
            f"{pkg}: not a ringgen package (no manifest.json); "
            "pass a folder written by `ringgen build`, e.g. generated/vector_add"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise _UsageError(f"{path}: not valid JSON ({exc})") from None


def _cmd_inspect(args: argparse.Namespace) -> int:
    pkg = Path(args.package)
    man = _load_manifest(pkg)
    if args.json:
        print(json.dumps(man, indent=2))
        return EXIT_OK
    if args.source:
        by_target = {f["target"]: f["path"] for f in man.get("files", [])}
        name = by_target.get(args.source, args.source)
        if name == "manifest.json" or args.source == "manifest":
            name = "manifest.json"
        path = pkg / name
        if not path.is_file():
            known = ", ".join(sorted(by_target)) or "none"
            raise _UsageError(f"{pkg}: no file for {args.source!r} (targets: {known})")
        sys.stdout.write(path.read_text(encoding="utf-8"))
        return EXIT_OK
    messages = man["messages"]
    if args.message:
        messages = [m for m in messages if m["name"] == args.message]
        if not messages:
            names = ", ".join(m["name"] for m in man["messages"])
            raise _UsageError(f"{pkg}: no message {args.message!r} (messages: {names})")
    out = [
        f"{man['name']}: {man['module']} ({man['source_file']}), ringgen {man['ringgen_version']}, "
        f"fingerprint {man['fingerprint'][:16]}"
    ]
    for m in messages:
        out += ["", message_block(m)]
    if not args.message:
        if man["queues"]:
            out += ["", "queues"]
            out.append(
                format_table(
                    ["kernel", "role", "message", "capacity", "slot size"],
                    [
                        [q["kernel"], q["role"], q["message"], q["capacity"], q["slot_size"]]
                        for q in man["queues"]
                    ],
                )
            )
        if man["kernels"]:
            out += ["", "kernels"]
            out.append(
                format_table(
                    [
                        "kernel",
                        "input",
                        "output",
                        "state",
                        "outbox",
                        "ordered",
                        "capacity",
                        "sources",
                    ],
                    [
                        [
                            k["name"],
                            k["input"],
                            k["output"],
                            k["state"],
                            "yes" if k["outbox"] else "no",
                            "yes" if k["ordered"] else "no",
                            k["capacity"],
                            ", ".join(f"{t}: {p}" for t, p in sorted(k["sources"].items())) or "-",
                        ]
                        for k in man["kernels"]
                    ],
                )
            )
        for g in man.get("graphs", []):
            out += ["", graph_block(g, {k["name"]: k for k in man["kernels"]})]
            out += _ordering_lines(g)
            strategies = strategy_block(g)
            if strategies:
                out += ["", strategies]
        out += ["", "files"]
        out.append(
            format_table(["file", "target"], [[f["path"], f["target"]] for f in man["files"]])
        )
    print("\n".join(out))
    return EXIT_OK


# ---- check -------------------------------------------------------------------------------------


def _ordering_lines(g: dict) -> list[str]:
    """Lines for a graph's topics, causal stages and stamp fields (none when it has none)."""
    out: list[str] = []
    if g.get("topics"):
        out += [""]
        out.append(
            format_table(
                ["topic", "message", "policy", "publishers", "subscribers"],
                [
                    [
                        t["name"],
                        t["message"],
                        t["policy"] + (f"({t['capacity']})" if t["capacity"] else ""),
                        ", ".join(t["publishers"] + (["host"] if t["host_publishes"] else [])),
                        ", ".join(t["subscribers"] + (["host"] if t["host_subscribes"] else [])),
                    ]
                    for t in g["topics"]
                ],
            )
        )
    if g.get("causal"):
        out += ["", f"  causal order: {', '.join(g['causal'])}"]
    if g.get("stamps"):
        stamps = ", ".join(f"{cls}.{field}" for cls, field in g["stamps"].items())
        out += [f"  stamps (rg.HLC): {stamps}"]
    return out


def _cmd_check(args: argparse.Namespace) -> int:
    from .check import check_package

    failed = 0
    for i, package in enumerate(args.packages):
        pkg = Path(package)
        _load_manifest(pkg)  # a clear usage error before any compiler runs
        results = check_package(pkg)
        failed += sum(r.failed for r in results)
        if i:
            print()
        print(f"{pkg}:")
        print(
            format_table(
                ["file", "toolchain", "result"],
                [
                    [
                        r.file,
                        r.toolchain,
                        r.status if r.status != "skipped" else f"skipped: {r.detail}",
                    ]
                    for r in results
                ],
            )
        )
        for r in results:
            if r.failed:
                print(f"\n{r.file} with {r.toolchain} failed:\n{textwrap.indent(r.detail, '    ')}")
        counts = {s: sum(r.status == s for r in results) for s in ("ok", "failed", "skipped")}
        print(f"  {counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped")
    return EXIT_FAILED if failed else EXIT_OK


# ---- devices -----------------------------------------------------------------------------------


def _cmd_devices(args: argparse.Namespace) -> int:
    import attrs

    from .devices import probe

    reports = probe()
    if args.json:
        print(json.dumps([attrs.asdict(r) for r in reports], indent=2))
        return EXIT_OK
    print("backends")
    print(
        format_table(
            ["backend", "available", "why not"],
            [[r.backend, "yes" if r.available else "no", r.reason or ""] for r in reports],
        )
    )
    rows = []
    for r in reports:
        for d in r.devices:
            a64 = "?" if d.atomics64 is None else ("yes" if d.atomics64 else "no")
            rows.append([d.backend, d.name, d.platform, d.mode, d.svm, a64, d.detail])
    print("\ndevices")
    print(
        format_table(
            ["backend", "device", "platform", "mode", "shared memory", "64-bit atomics", "detail"],
            rows,
        )
    )
    return EXIT_OK


# ---- top ---------------------------------------------------------------------------------------


def _cmd_top(args: argparse.Namespace) -> int:
    from .top import TopError, run, url_for

    if not args.interval > 0:
        raise _UsageError(f"--interval must be a positive number of seconds, not {args.interval}")
    try:
        run(url_for(args.url, args.port), interval=args.interval, once=args.once)
    except TopError as exc:
        print(f"ringgen top: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_OK


_COMMANDS = {
    "build": _cmd_build,
    "inspect": _cmd_inspect,
    "check": _cmd_check,
    "devices": _cmd_devices,
    "top": _cmd_top,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``ringgen`` command line; returns the exit status (the console script exits with it)."""
    parser = _parser()
    args = parser.parse_args(argv)
    debug = env_flag("RINGGEN_DEBUG")
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO if args.verbose else logging.WARNING,
        format="ringgen: %(levelname)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return _COMMANDS[args.command](args)
    except (RinggenError, _UsageError) as exc:
        if debug:
            traceback.print_exc()
        print(f"ringgen {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `ringgen inspect ... | head`
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
