"""Files written whole or not at all, the room and permission to write them, and locks held by one run at a time."""
import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from galaxyzoo.errors import DataError


def _umask():
    """The process umask (read once, at import, since reading it means setting it briefly)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


_NEW_FILE_MODE = 0o666 & ~_umask()  # the permissions an ordinary new file gets


WRITE_ADVICE = "or use another --root"


def size_text(num_bytes):
    """A size for a message: in GB from 1 GB up, in MB from 1 MB up, else in kB (a small size never reads 0.0 GB)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.1f} {unit}"
    return f"{num_bytes / 1e3:.1f} kB"


def nearest_existing(folder):
    """`folder` when it exists, else its nearest existing parent (where it would be made)."""
    existing = Path(folder).absolute()
    while not existing.exists():
        existing = existing.parent
    return existing


def free_bytes(folder):
    """The bytes free for new files in `folder`, or in its nearest existing parent when it is not made yet."""
    return shutil.disk_usage(nearest_existing(folder)).free


def check_free_space(folder, num_bytes, what, advice="free some space there, or use another --root"):
    """DataError naming `folder`, what it must hold (`what`, num_bytes) and what is free, when it has less room than
    that; steps call it before their long work, so that the work is not lost to a full disk at its end."""
    free = free_bytes(folder)
    if free < num_bytes:
        raise DataError(f"{folder}: {what} needs {size_text(num_bytes)} but only {size_text(free)} is free there; "
                        f"nothing was written; {advice}")


def _temporary_beside(path, advice=WRITE_ADVICE):
    """A new empty file beside `path` (its folder made when missing), named .<name>.<random>.tmp; DataError when the
    folder cannot be written, ending with what to do: make it writable, `advice`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise DataError(f"{path.parent}: cannot write in this folder ({exc.strerror or exc}); make it writable, "
                        f"{advice}") from None
    os.close(fd)
    return Path(tmp)


def check_writable(*folders, advice=WRITE_ADVICE):
    """DataError naming the first of `folders` in which no file can be created (for a folder not made yet: its
    nearest existing parent, where it would be made); nothing is left behind. Steps check their output folders at
    the start, so that hours of work are not lost to a folder found read-only at the end."""
    for folder in folders:
        _temporary_beside(nearest_existing(folder) / "write-check", advice).unlink()


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it is renamed to `path`, on failure removed,
    so a reader never sees a half-written file and an old file survives a failed rewrite."""
    path = Path(path)
    tmp = _temporary_beside(path)
    try:
        yield tmp
        os.chmod(tmp, _NEW_FILE_MODE)  # mkstemp makes files private; give the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # a failed write to an open file names no file
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def take_lock(path, targets, holder):
    """Take the exclusive lock `path` (flock: it ends with the process holding it, however that ends) for a run that
    writes `targets` (a name may be a glob pattern), and remove the temporaries an interrupted write of them left
    (atomic_path's naming; hundreds of MB for a checkpoint, tens of GB for a decoded cache). Returns the open lock file: the lock is held until it is
    closed. DataError when another live process holds it; `holder` says what that process is doing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(path, "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise DataError(f"{path}: {holder}; wait for it to end or stop it first") from None
    for target in map(Path, targets):
        for stale in target.parent.glob(f".{target.name}.*.tmp"):
            print(f"removing {stale} ({stale.stat().st_size / 1e6:.1f} MB), left by an interrupted write")
            stale.unlink(missing_ok=True)
    return lock
