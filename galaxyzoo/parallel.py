"""Every thread and process lifetime rule of the project: process pools that always shut down, and a prefetcher
that builds the next item in the background while the current one is used.

multiprocessing.Pool leaves through terminate(), which kills its workers; a worker killed while it sends a
result dies holding the result pipe's lock, and the pool then waits on that lock for ever (CPython issue
96995). That happens whenever a task fails while others are still running. Every pool in this project is
therefore a concurrent.futures.ProcessPoolExecutor left through process_pool(): the tasks not yet started
are cancelled, the running ones finish, and no process is killed.
"""
import concurrent.futures
import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import queue
import signal
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

import numpy as np


SEMAPHORE_FOLDER = "/dev/shm"  # where a process pool's locks are made
PARENT_POLL_SECONDS = 1.0  # how often a worker checks that the process that started its pool is alive


def _exit_when_gone(parent_pid):
    """Worker thread: end this process once parent_pid is gone. A parent killed with SIGKILL runs no clean-up, and
    its workers (hundreds of MB each) would otherwise wait for tasks for ever."""
    while True:
        time.sleep(PARENT_POLL_SECONDS)
        try:
            os.kill(parent_pid, 0)
        except (ProcessLookupError, PermissionError):  # PermissionError: the pid is another user's now
            os._exit(1)


def _pool_worker_init(parent_pid, initializer, initargs):
    """A worker leaves Ctrl-C (which a terminal sends to every process of the job) to its parent, which stops the
    pool in order; it ends by itself when the parent dies; then it runs the caller's set-up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_when_gone, args=(parent_pid,), daemon=True).start()
    if initializer is not None:
        initializer(*initargs)


def _start_forkserver():
    """Start the forkserver (once per process) with SIGINT ignored, which it and every worker it forks inherit, so
    that a Ctrl-C during a worker's start-up (imports: a second or more) cannot kill it and break its pool. A Ctrl-C
    meanwhile waits, blocked, for this process's own handler."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        multiprocessing.forkserver.ensure_running()
        return
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


@contextlib.contextmanager
def process_pool(workers, initializer=None, initargs=(), start_method=None):
    """A ProcessPoolExecutor of `workers` processes (start_method None: the platform's default), which end by
    themselves within PARENT_POLL_SECONDS of this process's death. On leaving, by success or by exception, it
    cancels the tasks not yet started and waits for the running ones."""
    context = multiprocessing.get_context(start_method)
    if context.get_start_method() == "forkserver":
        _start_forkserver()
    try:
        executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_pool_worker_init,
                                       initargs=(os.getpid(), initializer, initargs))
    except OSError as exc:  # its queues' locks are POSIX semaphores, files in /dev/shm on Linux
        raise OSError(exc.errno, f"{exc.strerror}: the worker processes cannot make their locks there "
                                 f"(--workers 0 runs without them)", SEMAPHORE_FOLDER) from None
    try:
        yield executor
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def imap_unordered(executor, function, tasks):
    """function(task) for every task, yielded as each finishes; the first failure is raised at once."""
    pending = {executor.submit(function, task) for task in tasks}
    while pending:
        done, pending = wait(pending, return_when=FIRST_EXCEPTION)
        for future in done:
            yield future.result()


def default_num_workers():
    """Background processes when the caller names none (--workers' default): one per core of this machine."""
    return os.cpu_count() or 1


def split(count, num_pieces):
    """Slices cutting range(count) into at most num_pieces nearly equal pieces."""
    bounds = np.linspace(0, count, min(count, max(num_pieces, 1)) + 1).round().astype(int)
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _start_method():
    """forkserver where available: workers start from a clean process, not a fork of one running threads."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


class _Stopped(Exception):
    """The consumer went away; the producer thread ends."""


class Prefetcher:
    """Builds items one ahead in a background thread: `build(key, run_all)` makes the item for `key`, where
    run_all(tasks) returns [task_function(t) for t in tasks], computed in a pool of num_workers processes (each set up
    by initializer(*initargs)), or in this process, as it is, when num_workers is 0. Use as a context manager; `get()`
    returns the items in the order of `keys` and re-raises the producer's exceptions. On leaving, the producer
    stops at its next task and the pool shuts down as process_pool does."""

    POLL_SECONDS = 0.2

    def __init__(self, keys, build, task_function, num_workers, initializer=None, initargs=()):
        self.keys, self.build, self.task_function, self.num_workers = list(keys), build, task_function, num_workers
        self.initializer, self.initargs = initializer, initargs
        self.stop = threading.Event()
        self.requests, self.results = queue.Queue(), queue.Queue()
        self.exits = contextlib.ExitStack()
        self.pool = None
        self.thread = threading.Thread(target=self._produce, daemon=True)

    def __enter__(self):
        if self.num_workers > 0:
            self.pool = self.exits.enter_context(process_pool(self.num_workers, self.initializer, self.initargs,
                                                              start_method=_start_method()))
        self.thread.start()
        if self.keys:
            self.requests.put(True)
        return self

    def __exit__(self, *exc_info):
        self.stop.set()
        self.requests.put(False)
        self.thread.join(timeout=10)
        self.exits.close()

    def get(self):
        """The next item; asks for the one after it before returning, so it is built meanwhile."""
        ok, value = self.results.get()
        if not ok:
            raise value
        self.requests.put(True)
        return value

    def _run_all(self, tasks):
        """The task_function results of `tasks` in order; gives up (_Stopped) as soon as the consumer has gone."""
        if self.pool is None:
            results = []
            for task in tasks:
                if self.stop.is_set():
                    raise _Stopped()
                results.append(self.task_function(task))
            return results
        futures = [self.pool.submit(self.task_function, task) for task in tasks]
        return [self._result(future) for future in futures]

    def _result(self, future):
        """The future's result, waited for in short steps; _Stopped once the consumer has gone."""
        while not self.stop.is_set():
            try:
                return future.result(timeout=self.POLL_SECONDS)
            except concurrent.futures.TimeoutError:
                continue
        raise _Stopped()

    def _produce(self):
        for key in self.keys:
            if not self.requests.get() or self.stop.is_set():
                return
            try:
                self.results.put((True, self.build(key, self._run_all)))
            except _Stopped:
                return
            except BaseException as exc:  # handed to the consumer, which re-raises it
                self.results.put((False, exc))
                return
