"""Shared pytest fixtures (the real data sample, isolation from shared data) and the one-line report at the end of
a run that skipped tests for want of the real sample."""
import signal

import pytest

from galaxyzoo import paths, runner
from helpers import isolation

REAL_SAMPLE_MISSING = "real sample not found at"


@pytest.fixture(scope="session")
def real_sample_if_present():
    """The real data slice (paths.real_sample_dir()), or None when it is absent."""
    path = paths.real_sample_dir()
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def real_sample(real_sample_if_present):
    """The real data slice; skips the test when it is absent."""
    if real_sample_if_present is None:
        pytest.skip(f"{REAL_SAMPLE_MISSING} {paths.real_sample_dir()}")
    return real_sample_if_present


@pytest.fixture(autouse=True)
def stop_signal_handlers():
    """SIGINT and SIGTERM handled as before the test afterwards: a run stopped in this process leaves both ignored
    until the process exits (runner.orderly_stop), which would change what later tests see."""
    saved = {sig: signal.getsignal(sig) for sig in runner.STOP_SIGNALS}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No RAM copy of anyone's data, no $GALAXY_ROOT, and the root forgotten after the test; yields tmp_path."""
    with isolation(monkeypatch, tmp_path):
        yield tmp_path


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter):
    """After pytest's own summary: one line saying how many tests the missing real sample skipped."""
    result = yield
    skipped = [report for report in terminalreporter.stats.get("skipped", [])
               if REAL_SAMPLE_MISSING in str(report.longrepr)]
    if skipped:
        terminalreporter.write_line(f"{REAL_SAMPLE_MISSING} {paths.real_sample_dir()}: {len(skipped)} tests "
                                    f"skipped; set GALAXY_REAL_SAMPLE to its folder", yellow=True, bold=True)
    return result
