"""Atomic file writes: a reader (or a crash) never sees half a file, and nothing is lost.

A write goes to `.<name>.<pid>.<random>.tmp` beside the target and is renamed over it. A process
killed mid-write leaves its temp file behind; the pid in the name tells the next run that its
writer is gone, so `remove_stale_temps` (called by every write and at the start of a run) removes it.
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path

from .numerics import NitroError

# what write_atomic and temp_folder name their temps: tempfile's 8 random characters between the
# writer's pid and .tmp (a user's file merely shaped like one is not taken for it)
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[a-z0-9_]{8}\.tmp$")
_PLAIN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
PLAIN_NAME_RULE = "A-Z a-z 0-9 . _ -, at most 128 characters, no '..', not starting with '.'"
_made: list[list[Path]] = []  # per open `removed_if_left_empty`: the folders writable_folder made
_locks: list[dict[Path, int]] = []  # per open `removed_if_left_empty`: the folders it locked


def is_plain_name(name) -> bool:
    """`name` can name a file or folder inside another one and no more: no path, no hidden file."""
    return isinstance(name, str) and bool(_PLAIN.fullmatch(name)) and ".." not in name


def write_atomic(path: str | Path, payload: bytes) -> None:
    """Write to a temp file in the same folder, fsync, give it the usual mode, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_figure(path: str | Path, fig, dpi: int = 110) -> None:
    """A matplotlib figure as PNG, written atomically."""
    import io

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")  # nothing clipped: long tick labels
    write_atomic(path, buf.getvalue())


def refuse_overwrite(path: Path, force: bool) -> None:
    """Before any work: `path`, an earlier run's result, is the user's unless `force`."""
    if path.exists() and not force:
        raise NitroError(f"{path} already exists (an earlier run's result): choose another --out, "
                         f"or pass --force to overwrite it")


def writable_folder(folder: str | Path, lock: bool = True) -> Path:
    """Create `folder` if needed and prove it writable before any work starts (NitroError if not);
    temp files of interrupted writes in it are removed. In a command's scope
    (`removed_if_left_empty`) and with `lock`, the folder is the command's until the scope ends:
    another nitro command that claims it meanwhile is refused."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NitroError(f"output folder {folder} exists and is not a folder")
    missing = [p for p in (folder.absolute(), *folder.absolute().parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if _made:
            _made[-1].extend(reversed(missing))
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise NitroError(f"output folder {folder} is not writable: {exc.strerror or exc}") from None
    if lock:
        _lock(folder)
    remove_stale_temps(folder)
    return folder


def _lock(folder: Path) -> None:
    """An exclusive flock on `folder` held until the innermost command scope ends (none outside
    one: a library caller owns its folders). The kernel drops it when the process dies."""
    if not _locks:
        return
    key = folder.resolve()
    if any(key in held for held in _locks):
        return
    fd = os.open(key, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise NitroError(f"output folder {folder} is in use by another nitro command: wait for it "
                         f"to end, or choose another --out") from None
    _locks[-1][key] = fd


@contextmanager
def removed_if_left_empty():
    """A command's scope: an output folder `writable_folder` creates in it (with the parents it
    creates) is removed again when the command raises and leaves it empty, so a failed run leaves
    no trace; a folder holding anything (a checkpoint, a report) is kept."""
    _made.append([])
    _locks.append({})
    try:
        yield
    except BaseException:
        for folder in reversed(_made[-1]):  # deepest first; one that is not empty stays
            with suppress(OSError):
                folder.rmdir()
        raise
    else:
        if len(_made) > 1:  # an enclosing scope that fails removes these too
            _made[-2].extend(_made[-1])
    finally:
        _made.pop()
        for fd in _locks.pop().values():
            os.close(fd)


def remove_stale_temps(folder: str | Path, name: str | None = None) -> list[Path]:
    """Delete the temp files in `folder` (of target `name`, or of any target) whose writing process
    no longer runs; returns what was removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TEMP.match(p.name)
        if m and (name is None or m["name"] == name) and not _alive(int(m["pid"])):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def temp_folder(parent: Path, name: str) -> Path:
    """A staging folder in `parent` for what will become `name`, named as write_atomic names its
    temp files: the next writable_folder of `parent` removes it if this process dies first."""
    return Path(tempfile.mkdtemp(prefix=f".{name}.{os.getpid()}.", suffix=".tmp", dir=parent))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
