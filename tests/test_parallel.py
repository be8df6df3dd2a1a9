"""parallel.process_pool: a task that fails while others are still sending large results ends the pool, every
time. (multiprocessing.Pool hangs on this within a few tries on a 2-core machine: its terminate() can kill a
worker that holds the result pipe's lock.) The loop runs in a child process so that a hang fails the test
instead of stopping the suite."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import parallel
from helpers import PROJECT_DIR, one_megabyte

TIMEOUT_SECONDS = 120  # 30 attempts take about 3 s

FAIL_WHILE_OTHERS_SEND = """
import sys
sys.path[:0] = [{project!r}, {tests!r}]
import parallel
from helpers import one_megabyte
if __name__ == "__main__":
    for attempt in range({attempts}):
        with parallel.process_pool(2) as pool:
            try:
                list({call})
            except ValueError:
                pass
            else:
                sys.exit("the bad task raised nothing")
    print("ended", attempt + 1)
"""


@pytest.mark.slow
@pytest.mark.parametrize("call", ["pool.map(one_megabyte, range(8))",
                                  "parallel.imap_unordered(pool, one_megabyte, range(8))"])
def test_a_failing_task_ends_the_pool_every_time(call):
    attempts = 30
    script = FAIL_WHILE_OTHERS_SEND.format(project=str(PROJECT_DIR), tests=str(Path(__file__).parent),
                                           attempts=attempts, call=call)
    # its own session, so that a hung child and its workers can all be killed
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as child:
        try:
            out, err = child.communicate(timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            pytest.fail(f"{attempts} pools, each with a failing task, did not end within {TIMEOUT_SECONDS} s")
    assert child.returncode == 0, err
    assert out.split() == ["ended", str(attempts)]


def test_imap_unordered_yields_every_result_once():
    with parallel.process_pool(2) as pool:
        values = sorted(int(result[0]) for result in parallel.imap_unordered(pool, one_megabyte, range(1, 9)))
    assert values == list(range(1, 9))


def test_a_failure_reaches_the_caller_with_its_message():
    with parallel.process_pool(2) as pool, pytest.raises(ValueError, match="task 0 is bad"):
        list(pool.map(one_megabyte, range(4)))
