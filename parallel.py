"""Process pools that always shut down.

multiprocessing.Pool leaves through terminate(), which kills its workers; a worker killed while it sends a
result dies holding the result pipe's lock, and the pool then waits on that lock for ever (CPython issue
96995). That happens whenever a task fails while others are still running. Every pool in this project is
therefore a concurrent.futures.ProcessPoolExecutor left through process_pool(): the tasks not yet started
are cancelled, the running ones finish, and no process is killed.
"""
import contextlib
import multiprocessing
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait


@contextlib.contextmanager
def process_pool(workers, initializer=None, initargs=(), start_method=None):
    """A ProcessPoolExecutor of `workers` processes (start_method None: the platform's default). On leaving, by
    success or by exception, it cancels the tasks not yet started and waits for the running ones."""
    context = multiprocessing.get_context(start_method)
    executor = ProcessPoolExecutor(workers, mp_context=context, initializer=initializer, initargs=initargs)
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
