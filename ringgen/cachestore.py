"""The build cache on disk: one root, folders only their owner can write, entries checked before use.

Everything ringgen caches (the packages ``rg.launch`` builds, the native helpers and the native
encoder, OpenCL program binaries, CUDA cubins) is an *entry*: a folder of files plus ``entry.json``,
the list of those files with their SHA-256 hashes and the key the entry was built for. The list is
written last, inside a temporary folder that is then renamed into place, so an entry is either whole
or absent. Before ringgen imports or loads anything from an entry it checks that the entry and each
file belong to the current user, that nobody else can write them, that the set of files is exactly
the listed one and that every file's content matches its hash (``open_entry``). An entry that fails
any check is never used: it is rebuilt under a fresh name (``stem.1``, ``stem.2``, ...), with a
warning, so a damaged or planted folder is never written into or trusted again.

The root is ``$RINGGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/ringgen``, else ``~/.cache/ringgen``
(``cache_root``). It and every folder ringgen creates in it are made 0700; a root or subfolder that
belongs to another user, or that group or others can write, is refused with a ``CacheError`` naming
the folder and the fix (``secure_dir``).

Like ``fsutil``, this module sits at the package root so that the wire library, the runtime and
the build cache may all import it; it imports nothing of ringgen but its errors.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Optional

import attrs

from .errors import CacheError
from .fsutil import write_atomic

__all__ = [
    "ENV_VAR",
    "LISTING",
    "Entry",
    "cache_root",
    "cache_subdir",
    "find_entry",
    "get_or_build",
    "open_entry",
    "publish_entry",
    "secure_dir",
]

log = logging.getLogger(__name__)

ENV_VAR = "RINGGEN_CACHE_DIR"
#: The file list of an entry: ``{"format": 1, "key": KEY, "files": {path: sha256}}``.
LISTING = "entry.json"
_FORMAT = 1
#: How many names one stem may take (``stem``, ``stem.1`` ... ``stem.15``): each damaged entry costs
#: one, and a stem with this many damaged entries is reported rather than rebuilt again.
_NAMES = 16
#: Folders that Python may create beside sources; ringgen never loads from them.
_IGNORED_DIRS = frozenset({"__pycache__"})


def cache_root() -> Path:
    """The cache root: ``$RINGGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/ringgen`` (when that is an
    absolute path, as the XDG specification requires), else ``~/.cache/ringgen``. Nothing is
    created or checked here (``cache_subdir`` does both)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "ringgen"
    return Path.home() / ".cache" / "ringgen"


def _untrusted(st: os.stat_result) -> Optional[str]:
    """Why a file or folder with this status cannot be trusted, or None."""
    uid = os.geteuid()
    if st.st_uid != uid:
        return f"it belongs to uid {st.st_uid}, not to you (uid {uid})"
    if st.st_mode & 0o022:
        who = " and ".join(
            w for w, bit in (("group", 0o020), ("others", 0o002)) if st.st_mode & bit
        )
        return f"{who} can write it (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def secure_dir(path: os.PathLike | str) -> Path:
    """Create ``path`` (mode 0700, parents as the umask says) or check the folder that is there.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        CacheError: it is not a folder, belongs to another user, or group or others can write it;
            the message names the folder and says what to do.
        OSError: it cannot be created or read (a read-only cache only costs a rebuild).
    """
    path = Path(path)
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise CacheError(
            f"the ringgen cache {path} is not a folder",
            hint=f"remove it, or set {ENV_VAR} to a folder of your own",
        )
    problem = _untrusted(st)
    if problem is not None:
        fix = (
            f"chmod 700 {path}"
            if st.st_uid == os.geteuid()
            else f"remove it (as its owner or root: rm -rf {path})"
        )
        raise CacheError(
            f"refusing to use the ringgen cache folder {path}: {problem}, so whoever can write it "
            "could plant code that ringgen would run",
            hint=f"{fix}, or set {ENV_VAR} to a folder only you can write",
        )
    return path


def cache_subdir(*parts: str) -> Path:
    """The checked cache root, or a checked folder under it (``cache_subdir("opencl")``).

    Raises:
        CacheError, OSError: as ``secure_dir``, for the root or the subfolder.
    """
    path = secure_dir(cache_root())
    for part in parts:
        path = secure_dir(path / part)
    return path


@attrs.frozen
class Entry:
    """A checked cache entry: its folder and the content of every listed file (relative POSIX
    path -> bytes), read once and hashed, so callers can use these very bytes."""

    path: Path
    files: Mapping[str, bytes] = attrs.field(repr=False)


def _candidates(parent: Path, stem: str) -> list[Path]:
    return [parent / stem] + [parent / f"{stem}.{i}" for i in range(1, _NAMES)]


def _read_checked(path: Path) -> bytes:
    """The bytes of the regular file ``path`` (never through a link), if it is trusted.

    Raises:
        ValueError: it is not a regular file, or it is not trusted (the reason).
        OSError: it cannot be read.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("it is not a regular file")
        problem = _untrusted(st)
        if problem is not None:
            raise ValueError(problem)
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _read_named(folder: Path, rel: str) -> bytes:
    """``_read_checked(folder / rel)``, with ``rel`` named in the reason it is refused."""
    try:
        return _read_checked(folder / rel)
    except ValueError as exc:
        raise ValueError(f"{rel}: {exc}") from None


def _walk(folder: Path) -> dict[str, Path]:
    """Every file under ``folder`` by relative POSIX path, except the listing and ``__pycache__``.

    Raises:
        ValueError: a link, a special file or an untrusted folder is in it (the reason).
    """
    found: dict[str, Path] = {}
    stack = [(folder, "")]
    while stack:
        here, prefix = stack.pop()
        with os.scandir(here) as it:
            for item in it:
                rel = prefix + item.name
                if item.is_symlink():
                    raise ValueError(f"{rel} is a symbolic link")
                if item.is_dir():
                    if item.name in _IGNORED_DIRS:
                        continue
                    problem = _untrusted(item.stat(follow_symlinks=False))
                    if problem is not None:
                        raise ValueError(f"{rel}/: {problem}")
                    stack.append((Path(item.path), rel + "/"))
                elif item.is_file():
                    if rel != LISTING:
                        found[rel] = Path(item.path)
                else:
                    raise ValueError(f"{rel} is not a regular file")
    return found


def _listing(data: bytes, key: str) -> dict[str, str]:
    """The ``files`` of a listing, checked against ``key``.

    Raises:
        ValueError: the listing is not one ringgen wrote for ``key``.
    """
    listing = json.loads(data.decode("utf-8"))
    if not isinstance(listing, dict) or listing.get("format") != _FORMAT:
        raise ValueError(f"{LISTING} is not a ringgen file list of format {_FORMAT}")
    if listing.get("key") != key:
        raise ValueError(f"{LISTING} was written for another key")
    files = listing.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and len(v) == 64 for k, v in files.items()
    ):
        raise ValueError(f"{LISTING} has no valid file list")
    return files


def open_entry(path: os.PathLike | str, key: str) -> tuple[Optional[Entry], Optional[str]]:
    """Check the entry folder ``path`` against its file list and ``key``.

    Returns:
        ``(entry, None)`` when every check passes; ``(None, None)`` when nothing is there;
        ``(None, why)`` when something is there that must not be used (damaged, incomplete, built
        for another key, or not the user's).
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"{path}: {exc.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return None, f"{path} is not a folder"
    problem = _untrusted(st)
    if problem is not None:
        return None, f"{path}: {problem} (remove it: rm -rf {path})"
    try:
        expected = _listing(_read_named(path, LISTING), key)
        found = _walk(path)
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        if missing or extra:
            what = [f"{m} is missing" for m in missing[:3]] + [
                f"{e} is not listed" for e in extra[:3]
            ]
            raise ValueError(", ".join(what))
        files = {}
        for rel in sorted(expected):
            data = _read_named(path, rel)
            if hashlib.sha256(data).hexdigest() != expected[rel]:
                raise ValueError(f"{rel} does not match its SHA-256 in {LISTING}")
            files[rel] = data
    except FileNotFoundError as exc:
        return None, f"{path} is incomplete ({Path(exc.filename or LISTING).name} is missing)"
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, f"{path} is damaged: {reason}"
    return Entry(path, files), None


def find_entry(parent: Path, stem: str, key: str) -> tuple[Optional[Entry], list[str]]:
    """The first usable entry of ``stem`` under ``parent`` for ``key``, and why others were not.

    Names are tried in order (``stem``, ``stem.1``, ...) up to the first that does not exist.
    """
    problems: list[str] = []
    for candidate in _candidates(parent, stem):
        entry, problem = open_entry(candidate, key)
        if entry is not None:
            return entry, problems
        if problem is None:
            break
        problems.append(problem)
    return None, problems


def _seal(folder: Path) -> dict[str, bytes]:
    """Make everything under ``folder`` the owner's only (folders 0700, files without group or
    other bits) and return every file's content by relative POSIX path.

    Raises:
        OSError, ValueError: as ``_walk`` and ``_read_checked``.
    """
    for here, dirs, names in os.walk(folder):
        for d in dirs:
            os.chmod(os.path.join(here, d), 0o700)
        for n in names:
            p = os.path.join(here, n)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):  # anything else is refused by _walk below
                os.chmod(p, stat.S_IMODE(st.st_mode) & 0o700)
    os.chmod(folder, 0o700)
    return {rel: _read_checked(p) for rel, p in _walk(folder).items()}


def publish_entry(
    parent: Path, stem: str, key: str, build: Callable[[Path], None], *, what: str
) -> Entry:
    """Build a fresh entry of ``stem`` and move it into place under the first free name.

    ``build(folder)`` writes the files into a new temporary folder; the file list is written last,
    then the folder is renamed to ``stem`` (or ``stem.1``, ... past names that are taken). When the
    name was taken by an equal entry a concurrent process published first, that one is used and
    this one discarded.

    Args:
        what: names the entry in errors.

    Raises:
        CacheError: every name of ``stem`` is taken by an entry that cannot be used.
        Whatever ``build`` raises; OSError when the folder cannot be written.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{stem}.", suffix=".building", dir=str(parent)))
    try:
        build(tmp)
        files = _seal(tmp)
        listing = {
            "format": _FORMAT,
            "key": key,
            "files": {rel: hashlib.sha256(data).hexdigest() for rel, data in sorted(files.items())},
        }
        write_atomic(tmp / LISTING, (json.dumps(listing, indent=1) + "\n").encode(), mode=0o600)
        for candidate in _candidates(parent, stem):
            try:
                os.rename(tmp, candidate)  # fails on a folder that is not empty: never merged into
                return Entry(candidate, files)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                    raise
            entry, _ = open_entry(candidate, key)
            if entry is not None:
                log.debug("cache entry %s was published concurrently; using it", candidate)
                return entry
        raise CacheError(
            f"{what}: all {_NAMES} names {parent / stem}[.N] hold entries that cannot be used",
            hint=f"delete them: rm -rf {parent / stem}*",
        )
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def get_or_build(
    parent: Path, stem: str, key: str, build: Callable[[Path], None], *, what: str
) -> Entry:
    """The checked entry of ``stem`` for ``key`` under ``parent``, built by ``build`` if none is
    usable; an unusable one is left where it is and a fresh one built, with a warning.

    Raises:
        CacheError: ``parent`` is not trusted (``secure_dir``), or no name is left.
        Whatever ``build`` raises; OSError when the cache cannot be written.
    """
    secure_dir(parent)
    entry, problems = find_entry(parent, stem, key)
    if entry is not None:
        return entry
    entry = publish_entry(parent, stem, key, build, what=what)
    if problems:
        log.warning(
            "ringgen cache: did not use %s: %s; rebuilt it as %s",
            what,
            "; ".join(problems),
            entry.path,
        )
    return entry
