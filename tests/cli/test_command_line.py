"""The command line: a run checked once before Prefect starts, its results and summary printed."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from irismodel import read_results

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.server]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# `iris-sweep ARGS` with the calls that check a run counted: the wrappers are installed before
# anything imports what they wrap, so every caller in the process (the command line, the flow,
# its tasks, the store) calls them.
COUNTED_RUN = """
import json, sys
from collections import Counter

import irismodel.data, irismodel.estimate, irismodel.parameters

calls = Counter()


def counted(name, function):
    def wrapper(*args, **kwargs):
        calls[name] += 1
        return function(*args, **kwargs)

    return wrapper


irismodel.data.load_dataset = counted("data loads", irismodel.data.load_dataset)
irismodel.estimate.forecast = counted("forecasts", irismodel.estimate.forecast)
config = irismodel.parameters.SweepConfig
config.__init__ = counted("validations", config.__init__)

from cli.sweep import main

status = main(sys.argv[1:])
print("counted: " + json.dumps(calls))
sys.exit(status)
"""


@pytest.mark.subprocess
def test_a_command_line_run_checks_once_and_prints_where_the_results_are(tmp_path):
    """`iris-sweep` validates the parameters, reads the data and forecasts once in a whole run
    (the flow takes the command line's pre-flight), publishes the rows and prints the folder."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    out = tmp_path / "out"
    args = ["--hidden-dims", "8..9", "--split-seeds", "0", "--seeds", "0", "1", "--epochs", "40"]
    args += ["--optimizers", "sgd", "--output-dir", str(out)]
    completed = subprocess.run(
        [sys.executable, "-c", COUNTED_RUN, *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    folders = list(out.glob("iris-sweep-*"))
    assert len(folders) == 1 and folders[0].is_dir()
    assert f"results: {folders[0]}" in completed.stdout
    assert len(read_results(str(out))) == 4
    counted = json.loads(re.search(r"^counted: (.*)$", completed.stdout, re.M).group(1))
    assert counted == {"validations": 1, "data loads": 1, "forecasts": 1}, counted
