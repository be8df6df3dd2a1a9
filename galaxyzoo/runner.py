"""What every script shares: the options several scripts take (defined once, with one default and one help text),
stopping in order on Ctrl-C or SIGTERM, and the runner that turns a user's error into one line and an exit status."""
import argparse
import contextlib
import signal
import sys
import threading

from galaxyzoo import parallel, paths
from galaxyzoo.errors import DataError, user_error_message

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
INTERRUPTED = 130  # the exit status of a run stopped by Ctrl-C (128 + SIGINT, as a shell reports it)
RERUN_NOTE = "no file is left half-written; run the same command again"


def stop_now(signum=None, frame=None):
    """Signal handler: stop the run with KeyboardInterrupt, and ignore SIGINT and SIGTERM from then on, so that a
    second Ctrl-C cannot cut short the clean-up that follows (workers finishing their task, partial results kept,
    temporaries removed) and turn it into tracebacks and leftovers."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


@contextlib.contextmanager
def orderly_stop():
    """Inside: SIGINT and SIGTERM stop the run through stop_now (main thread only; elsewhere nothing changes).
    The previous handlers are back on leaving, unless by a stop: then the signals stay ignored until the process
    has exited (a Ctrl-C during the interpreter's exit would end it by SIGINT, not with the script's status)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, stop_now) for sig in STOP_SIGNALS}
    stopped = False
    try:
        yield
    except KeyboardInterrupt:
        stopped = True
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_IGN if stopped else handler)


# The options several scripts take: each defined here once, with its one default and help text.
SHARED_OPTIONS = {
    "root": dict(default=None, help="project root holding data/, predictions/, analysis/ (default: $GALAXY_ROOT or "
                 "the project folder)"),
    "workers": dict(type=int, default=None, help="background processes (default: one per core of this machine)"),
    "device": dict(default="auto", help="cpu, cuda, cuda:N, or auto (cuda when available)"),
    "seed": dict(type=int, default=None, help="seed of everything the step draws at random (default: the recipe's "
                 "SEED when training, else 0)"),
    "batch_size": dict(type=int, default=None, help="images per minibatch when training (default: the recipe's "
                       "BATCH_SIZE), views per forward pass when predicting (default: 64)"),
}
LOWEST = {"workers": 0, "seed": 0, "batch_size": 1}  # the smallest value each integer option takes


def add_options(parser, *names):
    """Add the shared options `names` (keys of SHARED_OPTIONS) to an argparse parser."""
    for name in names:
        parser.add_argument(f"--{name.replace('_', '-')}", **SHARED_OPTIONS[name])


def check_options(parser, args):
    """parser.error for a shared integer option below its lowest value; --workers not given becomes its default."""
    for name, lowest in LOWEST.items():
        value = getattr(args, name, None)
        if value is not None and value < lowest:
            parser.error(f"--{name.replace('_', '-')} must be at least {lowest}, got {value}")
    if "workers" in vars(args) and args.workers is None:
        args.workers = parallel.default_num_workers()


def apply_root(args):
    """Use --root, when given, as the project root of this process."""
    if args.root is not None:
        paths.set_root(args.root)


def report_errors(work, interrupted=RERUN_NOTE, rank=None):
    """Run a script's work() under orderly_stop(): a DataError, or an OSError a user can cause (user_error_message),
    becomes one line `error: ...` on stderr (naming the rank of several), a stop by Ctrl-C or SIGTERM one line
    `stopped; <interrupted>` (what is kept and what to do; a function is asked for it then). Returns the exit
    status: 0, 1 after such an error, INTERRUPTED after a stop. Any other exception is a bug and keeps its traceback."""
    try:
        with orderly_stop():
            work()
    except (DataError, OSError) as exc:
        message = user_error_message(exc)
        if message is None:
            raise
        print(f"error: {'' if rank is None else f'rank {rank}: '}{message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nstopped; {interrupted() if callable(interrupted) else interrupted}", file=sys.stderr)
        return INTERRUPTED
    return 0


def run_script(parser, work, argv=None, interrupted=RERUN_NOTE, makes_root=False):
    """The whole main() of a script: add --root to `parser`, parse `argv`, apply --root, then run work(args)
    as report_errors does, after check_root unless the script `makes_root`. Returns the exit status."""
    add_options(parser, "root")
    args = parser.parse_args(argv)
    check_options(parser, args)
    apply_root(args)

    def checked_work():
        if not makes_root:
            paths.check_root()
        work(args)

    return report_errors(checked_work, interrupted)


def run_root_only_script(description, work, argv=None):
    """run_script for a script whose one option is --root; work() takes no arguments."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    return run_script(parser, lambda args: work(), argv)


def hms(seconds):
    """Seconds as H:MM:SS."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def model_name_argument(text):
    """A model name as a user types it: the try_*.py script's name, with or without its .py."""
    return text.removesuffix(".py")
