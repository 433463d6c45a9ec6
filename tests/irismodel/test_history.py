"""A run's history: the published runs of its parameters in its location, newest first."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from irismodel import history
from irismodel.parameters import SweepConfig
from irismodel.sweep import run_sweep

START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def location(tmp_path_factory) -> tuple[Path, list[str]]:
    """Three tiny runs of one configuration and one of another, an hour apart, in one folder."""
    root = tmp_path_factory.mktemp("history")
    tiny = dict(output_dir=str(root), hidden_dims="8..9", optimizers=["sgd"], seeds="0..2",
                split_seeds="0", epochs=5, report=False)  # fmt: skip
    folders = []
    for hour, epochs in enumerate((5, 5, 6, 5)):
        config = SweepConfig(**{**tiny, "epochs": epochs})
        folders.append(run_sweep(config, f"run{hour}", START + timedelta(hours=hour)))
    return root, folders


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_the_history_lists_the_runs_of_the_same_parameters_newest_first(location):
    """Runs 3, 1, 0 (run 2 has other epochs); run 1's history stops at run 1."""
    _, folders = location
    lines = history.run_history(folders[3]).splitlines()
    assert [_cells(line)[1] for line in lines[2:]] == ["run3", "run1", "run0"]
    assert all(_cells(line)[2] == "6" for line in lines[2:])  # 2 hidden_dims x 3 seeds
    older = history.run_history(folders[1]).splitlines()
    assert [_cells(line)[1] for line in older[2:]] == ["run1", "run0"]
    assert len(history.run_history(folders[3], limit=2).splitlines()) == 4


def test_a_run_with_a_report_shows_its_answers_and_one_without_a_dash(location):
    """The answers' columns come from a run's `-answers.json`; a run without one shows `-`."""
    _, folders = location
    answers = Path(folders[1]) / f"_{Path(folders[1]).name}-answers.json"
    numbers = {"epoch": 100, "sgd slope": -0.0123, "sgd slope low": -0.02, "sgd slope high": -0.01}
    answers.write_text(json.dumps({**numbers, "sgd p": 0.0004}))
    try:
        lines = history.run_history(folders[3]).splitlines()
    finally:
        answers.unlink()
    slope = _cells(lines[0]).index("sgd slope")
    assert [_cells(line)[slope] for line in lines[2:]] == ["-", "-0.0123 [-0.02, -0.01]", "-"]
    assert "sgd slope low" not in lines[0] and "epoch" not in _cells(lines[0])
    assert [_cells(line)[slope + 1] for line in lines[2:]] == ["-", "0.0004", "-"]


def test_a_folder_that_is_no_published_run_is_refused(location):
    """The history of a folder that is not a published run of its location names the argument."""
    root, _ = location
    with pytest.raises(ValueError, match="run_folder: .* is not a published run"):
        history.run_history(str(root / "nothing-here"))
