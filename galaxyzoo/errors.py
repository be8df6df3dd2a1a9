"""The errors a user can cause, and the one line a script prints for each."""
import errno
import os


class DataError(Exception):
    """Bad or missing input data; the message names the file, the ID and what is wrong."""


# The errors of the operating system that a user causes (a full disk, a read-only or forbidden folder, a folder that
# is not there), with what to do; any other OSError is a bug and keeps its traceback.
USER_OS_ERRORS = {
    errno.ENOSPC: "free some space there and run the same command again",
    errno.EDQUOT: "free some space there (the disk quota is reached) and run the same command again",
    errno.EROFS: "the file system is mounted read-only; use another --root (or, for /dev/shm, GALAXY_RAM_DIR)",
    errno.EACCES: "make it writable (or readable) for this user, or use another --root",
    errno.EPERM: "make it writable (or readable) for this user, or use another --root",
    errno.ENOENT: "check the path (a folder or file was removed or never made)",
}


def user_error_message(exc):
    """The one line a script prints for an error the user can cause: a DataError's own text, or for an OSError of
    USER_OS_ERRORS the file, the system's reason and what to do; None for anything else (a bug)."""
    if isinstance(exc, DataError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in USER_OS_ERRORS:
        where = f"{exc.filename}: " if exc.filename is not None else ""
        return f"{where}{exc.strerror or os.strerror(exc.errno)}; {USER_OS_ERRORS[exc.errno]}"
    return None


class SettingError(DataError, ValueError):
    """A setting of a try file, or a command-line option, with a value it cannot have."""
