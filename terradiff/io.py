"""Atomic file and folder writes: nothing half-written ever stands under a final name.

Every output of terradiff (checkpoints, figures, rasters, reports) is written to a temporary name in
the destination folder and then moved into place with :func:`os.replace`, which is atomic on POSIX
and Windows file systems. An interrupted run leaves at worst a hidden temporary entry, never a
truncated file.

Temporary names (:func:`temporary_name`) say who made them:
``.<name>.<kind>-<pid>-<host>-<token><suffix>``, with ``kind`` ``tmp`` (being written) or ``old``
(a folder being replaced), ``pid`` the creating process and ``host`` a short hash of the host name
and PID namespace. An exception or a signal removes them on the way out; only ``kill -9``, a power
cut or a crash of the interpreter leaves them behind. :func:`remove_stale_temporaries` then removes
those of a folder whose process no longer runs on this host (never those of a live process, nor
those of another host), and puts back an ``old`` folder whose replacement never arrived.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

from terradiff.errors import DataError

log = logging.getLogger(__name__)

_TEMPORARY = re.compile(
    r"^\.(?P<target>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-(?P<host>[0-9a-f]{8})-(?P<token>[0-9a-f]+)"
    r"(?P<suffix>\..*)?$"
)
"""A name made by :func:`temporary_name` (with any side-file suffix, e.g. GDAL's ``.aux.xml``)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@functools.cache
def host_tag() -> str:
    """8 hex digits naming this host and PID namespace (a process id means something only there).

    Two machines writing into one shared folder (NFS, a cluster's scratch space), or two
    containers with separate PID namespaces, get different tags, so neither takes the other's
    temporaries for stale ones.
    """
    namespace = ""
    with contextlib.suppress(OSError):
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    text = f"{socket.gethostname()}\0{namespace}".encode()
    return hashlib.blake2s(text, digest_size=4).hexdigest()


def temporary_name(path: Path, kind: str = "tmp", suffix: str = "") -> Path:
    """A fresh hidden name beside ``path`` that names this process (see the module docstring).

    Args:
        path: the final file or folder.
        kind: ``"tmp"`` for the new content being written, ``"old"`` for the previous content
            moved aside while it is replaced.
        suffix: appended (e.g. ``path.suffix``, for libraries that pick a format from it).
    """
    path = Path(path)
    token = secrets.token_hex(4)
    return path.parent / f".{path.name}.{kind}-{os.getpid()}-{host_tag()}-{token}{suffix}"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (True when that cannot be told safely)."""
    if pid <= 0 or os.name == "nt":  # 0/-1 address process groups; Windows' os.kill terminates
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only the existence and permission checks
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, as another user's process
        return True
    return True


def _remove(entry: Path) -> None:
    """Delete a file or a folder tree (already gone: nothing to do)."""
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()


def _remove_stale(entry: Path, target: Path, pid: int, restore: bool) -> bool:
    """Restore or remove one stale temporary; False when that failed (it is only logged)."""
    try:
        if restore:
            os.replace(entry, target)
        else:
            _remove(entry)
    except OSError as error:  # another process handled it meanwhile, or no permission
        log.debug("left %s alone: %s", entry, error)
        return False
    if restore:
        log.info(
            "restored %s from %s, left by process %d that stopped while replacing it",
            target,
            entry.name,
            pid,
        )
    elif os.path.lexists(entry):
        return False
    else:
        log.info("removed stale temporary %s, left by process %d that no longer runs", entry, pid)
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporaries of ``folder`` left by processes of this host that no longer run.

    A temporary is stale when its name (:func:`temporary_name`) carries this host's tag and the
    id of a process that does not exist any more (``os.kill(pid, 0)`` raises
    :class:`ProcessLookupError`). The temporaries of live processes, of other hosts and names of
    any other form are left alone. A stale ``old`` folder whose final name is missing (the
    process died between moving the previous version aside and moving the new one in) is moved
    back to its final name instead of being deleted. Each entry removed or restored is logged.

    Cleaning is best-effort: an entry that cannot be removed (permissions) is left as it is, and
    a folder that cannot be listed is skipped; nothing is raised.

    Args:
        folder: the folder to clean (not searched recursively; a missing folder is fine).

    Returns:
        The entries removed or restored (their temporary names).
    """
    folder = Path(folder)
    try:
        entries = sorted(folder.iterdir())
    except OSError:  # missing, not a folder, or not readable
        return []
    tag = host_tag()
    done: list[Path] = []
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is None or match["host"] != tag:
            continue
        pid = int(match["pid"])
        if process_alive(pid):
            continue
        target = folder / match["target"]
        restore = match["kind"] == "old" and not match["suffix"] and not os.path.lexists(target)
        if _remove_stale(entry, target, pid, restore):
            done.append(entry)
    return done


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path``.

    The caller writes the file at the yielded path (by any library; it exists, empty, when
    yielded). On an exception (or a signal raised as one) the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path, "tmp", path.suffix)
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        yield tmp
        if tmp.exists():  # created 0600 (like mkstemp); give the usual permissions
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; on success it becomes ``path``.

    An existing ``path`` is replaced only after the new folder is complete, so a failure at any
    point leaves the previous folder intact: it is moved aside (``old``) just before the new one
    is moved in, and moved back if that does not happen.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path, "tmp")
    old = temporary_name(path, "old")
    try:
        tmp.mkdir(mode=0o700)
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # made 0700 (like mkdtemp)
        if os.path.lexists(path):
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(old):
            if os.path.lexists(path):
                _remove(old)
            else:  # interrupted between the two moves: the previous version comes back
                os.replace(old, path)
        if tmp.exists():
            _remove(tmp)


GEOTIFF_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")
"""File-name endings of the GeoTIFFs terradiff writes (any case)."""


def check_named_as(
    path: str | os.PathLike[str], kind: str, suffixes: tuple[str, ...], option: str = ""
) -> Path:
    """Refuse a file name whose ending promises another format than the ``kind`` written to it
    (``forecast --out after.png`` held a TIFF that image viewers refuse to open).

    Args:
        path: the file to write.
        kind: what is written, e.g. ``"GeoTIFF"`` or ``"PNG"``.
        suffixes: the endings that fit ``kind`` (lower case, with the dot).
        option: the flag that named ``path``, for the message (e.g. ``"--out"``).

    Raises:
        DataError: the name does not end with one of ``suffixes``.
    """
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        given = f"{option} {out}" if option else str(out)
        fits = " or ".join(suffixes)
        ending = f"ends {out.suffix}" if out.suffix else "has no ending"
        raise DataError(
            f"{given}: the file is written as a {kind}, but its name {ending} (programs that go "
            f"by the name would not open it); give a name ending {fits}, e.g. "
            f"{out.with_suffix(suffixes[0]).name}"
        )
    return out
