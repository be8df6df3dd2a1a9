"""parallel.process_pool: a task that fails while others are still sending large results ends the pool, every
time. (multiprocessing.Pool hangs on this within a few tries on a 2-core machine: its terminate() can kill a
worker that holds the result pipe's lock.) The loop runs in a child process so that a hang fails the test
instead of stopping the suite."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from galaxyzoo import parallel
from helpers import PROJECT_DIR, one_megabyte

TIMEOUT_SECONDS = 120  # 30 attempts take about 3 s

FAIL_WHILE_OTHERS_SEND = """
import sys
sys.path[:0] = [{project!r}, {tests!r}]
from galaxyzoo import parallel
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


WORKERS_OF_A_KILLED_PARENT = """
import sys, time
from galaxyzoo import parallel

def nap(seconds):
    time.sleep(seconds)

if __name__ == "__main__":
    start_method = sys.argv[1]
    with parallel.process_pool(2, start_method=None if start_method == "default" else start_method) as pool:
        futures = [pool.submit(nap, 60) for _ in range(2)]
        time.sleep(1.0)
        print(" ".join(str(pid) for pid in pool._processes), flush=True)
        time.sleep(60)
"""


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has ended; only its exit status waits to be read
        return stat.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.slow
@pytest.mark.parametrize("start_method", ["default", "forkserver"])
def test_workers_end_when_their_parent_is_killed(tmp_path, start_method):
    """SIGKILL to the process that owns a pool (no clean-up runs in it): its busy workers are gone within a few
    seconds (before, they waited for ever)."""
    script = tmp_path / "owner.py"
    script.write_text(WORKERS_OF_A_KILLED_PARENT)
    owner = subprocess.Popen([sys.executable, str(script), start_method], stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ, PYTHONPATH=str(PROJECT_DIR)))
    workers = [int(pid) for pid in owner.stdout.readline().split()]
    assert len(workers) == 2 and all(alive(pid) for pid in workers)
    owner.send_signal(signal.SIGKILL)
    owner.wait(timeout=10)
    deadline = time.time() + 3 * parallel.PARENT_POLL_SECONDS + 5
    while any(alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in workers)
