"""Writing files so that nobody ever sees half of one: the one atomic-write helper of the package.

Every file the toolkit writes (checkpoints, training state, loss plots, CSV exports, CLI tables)
goes through :func:`atomic_paths` or :func:`atomic_write`: the content is written to a temporary
file in the destination's own directory (``.<name>.<random>.tmp``, same filesystem), flushed to disk,
and renamed over the destination with ``os.replace``, which is atomic. So:

- a reader sees the old file or the new one, never a mixture;
- a failure while writing (disk full, an exception in the writer, Ctrl-C) leaves the old file as it
  was and removes the temporary file;
- several files written together (a checkpoint's ``.safetensors`` and ``.json``) are replaced
  together: if renaming the second fails, the first is put back, so the pair stays a pair.
  (A power cut between the two renames can still leave a mixed pair; the checkpoint's JSON records
  the weights' hash, so loading such a pair is refused, not silently wrong.)

Output paths are checked before any work is done (:func:`check_output_path`). The errors, chosen so
that a caller can tell "fix the path" from "the disk failed":

- the directory does not exist -> ``FileNotFoundError`` naming it (create it first);
- the path is a directory, has the wrong suffix, or its directory cannot be written (permissions, a
  read-only filesystem) -> ``ValueError`` saying so;
- an ``OSError`` while writing (disk full) is raised as it is, after the clean-up above.

``model`` never imports ``interp``; ``interp`` (export, CLI) imports this module.

Example:
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
    >>> atomic_write(path, lambda tmp: tmp.write_text("hello")).name
    'note.txt'
    >>> path.read_text(), sorted(p.name for p in path.parent.iterdir())
    ('hello', ['note.txt'])
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

_UMASK = os.umask(0o022)  # read the process umask once (os.umask can only read it by setting it)
os.umask(_UMASK)
_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def check_output_path(
    path: str | os.PathLike, *, suffixes: Sequence[str] = (), create_parent: bool = False, what: str = "output"
) -> Path:
    """``path`` as a Path, after checking a file can be written there; raises before anything is written.

    ``suffixes`` (e.g. ``(".csv",)``) refuses other names, so a typo cannot replace a checkpoint with
    a table. ``create_parent`` makes the missing directories (checkpoints: ``--out runs/mine``).

    Example:
        >>> check_output_path("no/such/table.csv")
        Traceback (most recent call last):
        ...
        FileNotFoundError: output directory 'no/such' does not exist; create it first (mkdir -p no/such)
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what} path must be a str or a path, got {type(path).__name__}")
    path = Path(os.fspath(path))
    if not str(path) or path.name in ("", ".", ".."):
        raise ValueError(f"{what} path {str(path)!r} names no file; give a file name such as 'out.csv'")
    if path.is_dir():
        example = str(path / "out.csv")
        raise ValueError(f"{what} path {str(path)!r} is a directory; give a file name such as {example!r}")
    if suffixes and path.suffix.lower() not in suffixes:
        raise ValueError(f"{what} path {str(path)!r} must end in {' or '.join(suffixes)}")
    directory = path.parent
    if create_parent and not directory.exists():
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ValueError(f"cannot create the {what} directory {str(directory)!r}: {err.strerror or err}") from None
    if not directory.exists():
        raise FileNotFoundError(
            f"{what} directory {str(directory)!r} does not exist; create it first (mkdir -p {directory})"
        )
    if not directory.is_dir():
        raise ValueError(f"{what} directory {str(directory)!r} is a file, not a directory; choose another path")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(
            f"cannot write in the {what} directory {str(directory)!r} (permission denied); choose another path"
        )
    return path


def _temp_beside(path: Path, suffix: str) -> Path:
    """A new empty file ``.<name>.<random><suffix>`` in ``path``'s directory; unwritable directories -> ValueError."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"directory {str(path.parent)!r} does not exist; create it first (mkdir -p {path.parent})"
        ) from None
    except OSError as err:
        if err.errno not in _UNWRITABLE:
            raise
        raise ValueError(
            f"cannot write in the directory {str(path.parent)!r} ({err.strerror}); choose another path"
        ) from None
    os.close(fd)
    return Path(tmp)


def _finish(tmp: Path) -> None:
    """Flush ``tmp`` to disk and give it the usual permissions (mkstemp makes 0600)."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o666 & ~_UMASK)


def _backup(dest: Path) -> Path:
    """A hard link (or, where links are not possible, a copy) of ``dest`` under a temporary name."""
    backup = _temp_beside(dest, ".bak")
    try:
        backup.unlink()
        os.link(dest, backup)
    except OSError:
        shutil.copy2(dest, backup)
    return backup


def _replace_all(pairs: list[tuple[Path, Path]]) -> None:
    """``os.replace`` each ``(tmp, dest)``; if one fails, put the destinations already replaced back."""
    backups = {dest: _backup(dest) for _, dest in pairs if len(pairs) > 1 and dest.exists()}
    done: list[Path] = []
    try:
        for tmp, dest in pairs:
            os.replace(tmp, dest)
            done.append(dest)
    except BaseException:
        for dest in done:
            if dest in backups:
                os.replace(backups.pop(dest), dest)
            else:
                dest.unlink(missing_ok=True)
        raise
    finally:
        for backup in backups.values():
            backup.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # make the renames durable where the platform allows it
        fd = os.open(pairs[0][1].parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Temporary paths, one per destination, renamed over the destinations when the block ends without error.

    On an error inside the block (or while renaming) every temporary file is removed and every
    destination keeps its previous content. The directories must exist (see :func:`check_output_path`).

    Example:
        >>> import pathlib, tempfile
        >>> directory = pathlib.Path(tempfile.mkdtemp())
        >>> with atomic_paths(directory / "a.txt", directory / "b.txt") as (a, b):
        ...     _ = a.write_text("one"), b.write_text("two")
        >>> sorted(p.name for p in directory.iterdir())
        ['a.txt', 'b.txt']
    """
    dests = [Path(os.fspath(p)) for p in paths]
    temps: list[Path] = []
    try:
        for dest in dests:
            temps.append(_temp_beside(dest, ".tmp"))
        yield list(temps)
        for tmp in temps:
            _finish(tmp)
        _replace_all(list(zip(temps, dests, strict=True)))
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file beside ``path``, then rename it to ``path``; returns ``path``.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.bin"
        >>> atomic_write(path, lambda tmp: tmp.write_bytes(b"ok")).read_bytes()
        b'ok'
    """
    path = Path(os.fspath(path))
    with atomic_paths(path) as (tmp,):
        write(tmp)
    return path
