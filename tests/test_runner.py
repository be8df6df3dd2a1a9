"""runner.py: the one way every script reports a user's error (one line, exit 1), a stop (one line, exit 130) and
a bug (its traceback), and the options several scripts share, each defined once."""
import argparse
import signal
import subprocess
import sys

import pytest

from galaxyzoo import distributed, runner
from galaxyzoo.errors import DataError, SettingError
from helpers import PROJECT_DIR


def failing(exc):
    def work():
        raise exc
    return work


def test_a_user_s_error_is_one_line_naming_the_rank_and_a_bug_keeps_its_traceback(capsys):
    assert runner.report_errors(lambda: None) == 0
    assert runner.report_errors(failing(DataError("bad image 42")), rank=1) == 1
    assert capsys.readouterr().err == "error: rank 1: bad image 42\n"
    assert runner.report_errors(failing(SettingError("--device cuda: no CUDA"))) == 1
    assert capsys.readouterr().err == "error: --device cuda: no CUDA\n"
    assert runner.report_errors(failing(OSError(28, "No space left on device", "/full/file"))) == 1
    assert capsys.readouterr().err.startswith("error: /full/file: No space left on device; free some space")
    for bug in (KeyError("a bug"), ValueError("a bug"), OSError(5, "Input/output error")):
        with pytest.raises(type(bug)):
            runner.report_errors(failing(bug))


def test_a_stop_is_one_line_and_exit_130(capsys):
    assert runner.report_errors(failing(KeyboardInterrupt()), "the images done are kept") == runner.INTERRUPTED
    assert capsys.readouterr().err == "\nstopped; the images done are kept\n"
    assert runner.report_errors(failing(KeyboardInterrupt()), lambda: "asked when stopping") == runner.INTERRUPTED
    assert capsys.readouterr().err == "\nstopped; asked when stopping\n"
    assert all(signal.getsignal(sig) == signal.SIG_IGN for sig in runner.STOP_SIGNALS)


def test_a_rank_leaves_its_job_with_the_error_going_on_to_the_runner(capsys):
    second_of_two = distributed.Ranks(1, 2, 1)
    status = runner.report_errors(lambda: distributed.run_rank(failing(DataError("bad image 42")), second_of_two),
                                  rank=second_of_two.rank)
    assert status == 1 and capsys.readouterr().err == "error: rank 1: bad image 42\n"


def test_shared_options_are_defined_once_with_one_default_and_help():
    parsers = []
    for names in (("root", "workers"), ("workers", "device", "batch_size"), ("seed", "workers")):
        parser = argparse.ArgumentParser()
        runner.add_options(parser, *names)
        parsers.append(parser)
    helps = {action.dest: (action.default, action.help) for parser in parsers for action in parser._actions
             if action.dest != "help"}
    assert helps["workers"] == (None, runner.SHARED_OPTIONS["workers"]["help"])
    with pytest.raises(SystemExit):
        parser = parsers[0]
        runner.check_options(parser, parser.parse_args(["--workers", "-1"]))


@pytest.mark.parametrize("script", ["create_train_ids.py", "create_solutions_train.py", "extract_pysex_params.py",
                                    "copy_data_to_shm.py", "predict_augmented_npy.py", "blend_predictions.py",
                                    "convert_npy_to_csv.py", "score_predictions.py", "make_synthetic_data.py",
                                    "try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense.py"])
def test_every_script_s_shared_options_say_the_same(script):
    """--help of each script: a shared option it takes reads as runner.SHARED_OPTIONS defines it."""
    out = subprocess.run([sys.executable, script, "--help"], cwd=PROJECT_DIR, capture_output=True, text=True,
                         env={"COLUMNS": "4000", "PATH": "/usr/bin:/bin"}).stdout
    flat = " ".join(out.split())
    for name, option in runner.SHARED_OPTIONS.items():
        flag = f"--{name.replace('_', '-')}"
        if f"{flag} " in flat:
            assert " ".join(option["help"].split()) in flat, (script, flag)
