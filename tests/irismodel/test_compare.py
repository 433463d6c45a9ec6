"""Runs compared: bit-identical reruns, perturbed rows, changed environments, the previous run."""

import copy
import json
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest

from irismodel import compare, history
from irismodel.parameters import SweepConfig
from irismodel.provenance import provenance
from irismodel.store import read_results
from irismodel.store.layout import MANIFEST
from irismodel.sweep import run_sweep


class Run(NamedTuple):
    rows: pd.DataFrame
    manifest: dict
    folder: str


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Run]:
    """Three real runs in one location: two of the same parameters a day apart, one other."""
    root = str(tmp_path_factory.mktemp("runs"))
    same = dict(seeds="0..4", hidden_dims="8..9", epochs=30, device="cpu", output_dir=root)
    other = {**same, "seeds": "0..1", "hidden_dims": [8], "optimizers": ["sgd"]}
    made = {}
    for day, (name, parameters) in enumerate((("a", same), ("b", same), ("other", other)), 1):
        folder = run_sweep(
            SweepConfig(**parameters), f"run-{name}", datetime(2026, 1, day, tzinfo=UTC)
        )
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
        made[name] = Run(read_results(folder), manifest, folder)
    return made


def _with(manifest: dict, **changes) -> dict:
    return {**copy.deepcopy(manifest), **changes}


def _cells(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line)) - 1


def test_two_runs_of_one_environment_are_identical(runs):
    """Two real runs of the same parameters on this machine compare as bit-identical."""
    a, b = runs["a"], runs["b"]
    result = compare.compare_runs(a.rows, a.manifest, b.rows, b.manifest)
    assert result.verdict == compare.IDENTICAL, result.text()
    assert (result.before, result.after) == ("run-a", "run-b")
    assert result.matched == len(a.rows) == len(b.rows) > 0
    assert result.changed_rows == result.only_before == result.only_after == 0
    assert result.loss_difference == 0 and result.columns == {} and result.environment == {}
    assert f"identical: all {len(a.rows)} models bit-identical" in result.text().splitlines()[0]


def test_perturbed_rows_are_a_warning_with_size_and_count(runs):
    """One loss nudged by 1 ulp, one outcome and one test metric changed: a WARNING saying so."""
    a, b = runs["a"], runs["b"]
    rows = b.rows.copy()
    curve = rows.at[3, "loss_curve"].copy()
    before = curve[9]
    curve[9] = np.nextafter(before, np.float32(np.inf))
    rows.at[3, "loss_curve"] = curve
    size = float(np.float64(curve[9]) - np.float64(before))
    rows.at[7, "outcome"] = "stalled" if rows.at[7, "outcome"] != "stalled" else "converged"
    accuracy = rows.at[11, "test_accuracy"]
    rows.at[11, "test_accuracy"] = accuracy - 0.125
    result = compare.compare_runs(a.rows, a.manifest, rows, b.manifest)
    assert result.verdict == compare.WARNING
    assert result.loss_difference == size > 0
    model = rows.loc[3]
    assert result.loss_where == (
        f"split_seed {model.split_seed}, seed {model.seed}, hidden_dim {model.hidden_dim}, "
        f"optimizer {model.optimizer}, epoch 10"
    )
    assert (result.changed_rows, result.outcome_changes, result.prediction_changes) == (3, 1, 1)
    assert set(result.columns) == {"loss_curve", "outcome", "test_accuracy"}
    assert result.columns["test_accuracy"] == (1, abs(accuracy - rows.at[11, "test_accuracy"]))
    assert result.reason.startswith("same environment and data on the CPU, yet")
    assert f"3 of {len(rows)} models differ (loss curves by up to {size:.3g}" in result.reason
    assert "outcomes changed: 1" in result.reason
    assert result.text().startswith("Run run-b compared with run-a: WARNING: same environment")
    assert result.markdown().splitlines()[2].startswith("**WARNING**: same environment")


def test_changed_torch_version_is_expected_with_its_size(runs):
    """The same rows under a manifest naming another torch: expected, having moved by 0."""
    a, b = runs["a"], runs["b"]
    after = _with(b.manifest, provenance={**provenance(), "torch": "9.9.9"})
    result = compare.compare_runs(a.rows, _with(a.manifest, provenance=provenance()), b.rows, after)
    assert result.verdict == compare.EXPECTED
    assert result.environment == {"torch": (provenance()["torch"], "9.9.9")}
    assert result.loss_difference == 0 and result.changed_rows == 0
    assert result.reason.startswith("the environment changed: 0 of")
    assert "torch" in result.text() and "9.9.9" in result.markdown()


def test_older_run_without_provenance_is_never_a_warning(runs):
    """A run with versions only, against one with provenance: the unknown keys count as changed."""
    a, b = runs["a"], runs["b"]
    rows = b.rows.copy()
    rows.at[0, "outcome"] = "diverged"
    older = {key: value for key, value in a.manifest.items() if key != "provenance"}
    result = compare.compare_runs(a.rows, older, rows, _with(b.manifest, provenance=provenance()))
    assert result.verdict == compare.EXPECTED
    assert result.environment["cpu_model"] == (None, provenance()["cpu_model"])
    assert "cpu_model not recorded ->" in result.text()


def test_changed_data_and_gpu_rows_are_expected(runs):
    """Another data fingerprint, or rows trained on a GPU, make differing rows expected."""
    a, b = runs["a"], runs["b"]
    rows = b.rows.copy()
    rows.at[0, "final_train_loss"] += 1e-3
    other_data = _with(b.manifest, data_fingerprint="0" * 64)
    result = compare.compare_runs(a.rows, a.manifest, rows, other_data)
    assert result.verdict == compare.EXPECTED and result.reason.startswith("the data changed")
    gpu_a, gpu_b = a.rows.assign(device="cuda:0"), rows.assign(device="cuda:0")
    result = compare.compare_runs(gpu_a, a.manifest, gpu_b, b.manifest)
    assert result.verdict == compare.EXPECTED and result.reason.startswith("on a GPU")


def test_models_in_one_run_only_are_counted(runs):
    """Models of one run only are counted, and make rows of one environment a WARNING."""
    a, b = runs["a"], runs["b"]
    result = compare.compare_runs(a.rows, a.manifest, b.rows.iloc[5:], b.manifest)
    assert (result.matched, result.only_before, result.only_after) == (len(b.rows) - 5, 5, 0)
    assert result.verdict == compare.WARNING and "5 models in one run only" in result.reason


def test_answers_side_by_side_and_markdown_escaped(runs):
    """Answers show side by side; values from the data cannot break the markdown table."""
    a, b = runs["a"], runs["b"]
    before = _with(a.manifest, run_id="x|y\n# z")
    answers = {"slope | p": 0.25}, {"slope | p": 0.5, "accuracy": 0.9}
    result = compare.compare_runs(a.rows, before, b.rows, b.manifest, *answers)
    assert result.answers == {"slope | p": (0.25, 0.5), "accuracy": (None, 0.9)}
    assert "slope | p 0.25 -> 0.5; accuracy not recorded -> 0.9" in result.text()
    table = [line for line in result.markdown().splitlines() if line.startswith("|")]
    assert len(table) > 5 and all(_cells(line) == 2 for line in table)
    assert "\n# z" not in result.markdown() and "\n" not in result.text().splitlines()[0]


def test_runs_of_other_parameters_match_models_by_key(runs):
    """Runs of other parameters: expected, the parameters named, shared models matched by key."""
    a, other = runs["a"], runs["other"]
    result = compare.compare_runs(a.rows, a.manifest, other.rows, other.manifest)
    assert result.verdict == compare.EXPECTED and result.reason.startswith("the parameters")
    assert result.parameters["seeds"] == ("0..4", "0..1")
    assert (result.matched, result.only_before) == (len(other.rows), len(a.rows) - len(other.rows))
    assert "loss_curve" not in result.columns  # the same model trains alike in either run


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda rows: rows.drop(columns="seed"), r"after: the rows lack seed; give read_results"),
        (lambda rows: pd.concat([rows, rows.iloc[:2]]), r"after: 2 rows repeat a model's key"),
    ],
)
def test_rows_that_are_not_one_run_are_refused(runs, change, match):
    """Rows without a model's key, or with a model twice, are refused naming the problem."""
    a, b = runs["a"], runs["b"]
    with pytest.raises(ValueError, match=match):
        compare.compare_runs(a.rows, a.manifest, change(b.rows), b.manifest)


def test_previous_run_is_the_latest_published_of_the_same_parameters(runs):
    """The previous run: latest complete run of the same parameters; never itself or unpublished."""
    a, b, other = runs["a"], runs["b"], runs["other"]
    later = "2026-01-05T00:00:00+00:00"
    unpublished = _with(b.manifest, run_id="run-c", status="failed", started_at=later)
    candidates = [(r.manifest, r.folder) for r in (b, a, other)] + [(unpublished, "c")]
    tonight = _with(b.manifest, run_id="run-d", started_at=later, output_dir="/elsewhere")
    tonight["parameters"] = {**tonight["parameters"], "force": True, "report": False}
    assert history.previous_run(candidates, tonight) == b.folder
    assert history.previous_run(candidates, b.manifest) == a.folder
    assert history.previous_run(candidates, a.manifest) is None
    assert history.previous_run(candidates, other.manifest) is None
    moved = _with(b.manifest, data_fingerprint="0" * 64)
    mixed = [(moved, b.folder), (a.manifest, a.folder)]
    assert history.previous_run(mixed, tonight) == b.folder
    assert history.previous_run(mixed, tonight, same_data=True) == a.folder


def test_history_lists_runs_newest_first_with_rates_and_answers(runs):
    """The history table: one line per run, newest first, its models, rates and answers."""
    a, b = runs["a"], runs["b"]
    entries = [(a.manifest, a.rows["outcome"], {"p | value": 0.01})]
    table = history.history_markdown([*entries, (b.manifest, b.rows["outcome"], None)])
    lines = table.splitlines()
    assert len(lines) == 4 and all(_cells(line) == 8 for line in lines)
    assert "run-b" in lines[2] and "run-a" in lines[3] and "2026-01-02 00:00" in lines[2]
    stalled = (a.rows["outcome"] == "stalled").mean()
    assert f"| {len(a.rows):,} |" in lines[3] and f"| {stalled:.1%} |" in lines[3]
    assert lines[3].endswith("| 0.01 |") and lines[2].endswith("| - |")
    started = datetime.fromisoformat(a.manifest["started_at"])
    wall = (datetime.fromisoformat(a.manifest["finished_at"]) - started).total_seconds()
    assert f"| {wall:.0f} s |" in lines[3]


def test_provenance_names_code_libraries_and_hardware():
    """Provenance has every documented key, JSON-ready, this checkout's commit; callers can't
    change what the next call returns."""
    found = provenance()
    assert {"python", "iris-sweep", "torch", "numpy", "pyarrow", "scikit-learn"} <= set(found)
    assert {"git_commit", "git_dirty", "cpu_model", "cpu_count", "gpus", "torch_threads"} <= set(
        found
    )
    assert {"cpu_avx2", "cpu_avx512f", "cpu_fma", "torch_cpu_capability", "cuda"} <= set(found)
    assert json.loads(json.dumps(found)) == found
    root = Path(compare.__file__).resolve().parent
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True)
    if head.returncode != 0:
        pytest.skip("the package does not run from a git checkout here")
    assert found["git_commit"] == head.stdout.decode().strip()
    assert isinstance(found["git_dirty"], bool)
    found["gpus"].append("changed by a caller")
    assert provenance()["gpus"] != found["gpus"]
