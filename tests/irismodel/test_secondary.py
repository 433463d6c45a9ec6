"""The pre-specified secondary summaries are computed right from small real results."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image

from irismodel import report, store
from irismodel.parameters import SweepConfig
from irismodel.report.answers import answer_numbers
from irismodel.report.scan import scan_frame
from irismodel.report.secondary import add_secondary
from irismodel.sweep import run_sweep

EPOCHS = 120  # short: many sgd models are still above the linear baseline, so some are censored
KEYS = ["hidden_dim", "optimizer", "split_seed", "seed"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One real run over two splits; returns its folder and its rows."""
    folder = tmp_path_factory.mktemp("secondary")
    config = SweepConfig(
        output_dir=str(folder), device="cpu", epochs=EPOCHS, hidden_dims=[8, 9, 10],
        optimizers=["sgd", "manual-no-zero-grad"], seeds="0..5", split_seeds="0..1",
    )  # fmt: skip
    path = run_sweep(config, "run-secondary", datetime(2026, 1, 2, 3, 0, tzinfo=UTC))
    return path, store.read_results(path)


@pytest.fixture(scope="module")
def scanned(run):
    scan = scan_frame(run[1], 100)
    return scan, add_secondary(answer_numbers(scan), scan)


def _direct_first_below(frame):
    """The first epoch (1-based) whose loss is below the row's baseline_loss, 0 if none."""
    out = []
    for curve, baseline in zip(frame["loss_curve"], frame["baseline_loss"], strict=True):
        below = np.flatnonzero(np.asarray(curve, dtype=np.float64) < float(baseline))
        out.append(int(below[0]) + 1 if below.size else 0)
    return frame[KEYS].assign(direct=out)


def test_first_epoch_below_the_baseline_equals_a_direct_computation(run, scanned):
    """Each model's first epoch below the linear baseline is the first curve value below it."""
    scan, _ = scanned
    direct = _direct_first_below(run[1])
    merged = (
        scan.models[[*KEYS, "_first_below"]]
        .astype({"optimizer": str})
        .merge(direct.astype({"optimizer": str}), on=KEYS, validate="one_to_one")
    )
    assert len(merged) == len(run[1])
    assert (merged["_first_below"].to_numpy() == merged["direct"].to_numpy()).all()
    # the run holds both kinds, so the censored path is exercised
    assert 0 < (merged["direct"] == 0).sum() < len(merged)


def test_models_that_never_beat_the_baseline_are_counted_censored_not_dropped(run, scanned):
    """Censored models are counted, ranked last in the medians and kept in every test block."""
    _, numbers = scanned
    direct = _direct_first_below(run[1])
    rules = numbers["settings"][0]["secondary"]["rules"]
    for rule in rules:
        mine = direct[direct["optimizer"].astype(str) == rule["optimizer"]]
        beat = rule["first_beating"]
        assert beat["n_censored"] == int((mine["direct"] == 0).sum())
        for entry in beat["per_dim"]:
            values = mine.loc[mine["hidden_dim"] == entry["hidden_dim"], "direct"].to_numpy()
            ranked = np.where(values == 0, np.inf, values)
            assert entry["n"] == len(values)
            assert entry["n_beat"] == int((values > 0).sum())
            assert entry["median"] == np.median(ranked)
        # every (split, seed) block is tested: none left out for being censored
        assert beat["trend"]["n_blocks"] == mine.groupby(["split_seed", "seed"]).ngroups


def test_slope_by_epoch_at_epoch_100_equals_question_2s_mean_per_block_slope(scanned):
    """The slope curve at epoch 100 is question 2's mean per-block slope and its interval."""
    _, numbers = scanned
    setting = numbers["settings"][0]
    for rule, q2 in zip(setting["secondary"]["rules"], setting["question2"], strict=True):
        assert rule["optimizer"] == q2["optimizer"]
        curve = rule["slope_by_epoch"]
        at = curve["epoch"].index(100)
        assert curve["n_blocks"][at] == q2["n_blocks"]
        for key in ("mean", "low", "high"):
            assert curve[key][at] == pytest.approx(q2["slope"][key], rel=1e-9, abs=1e-12)
        # epochs before and after 100 are evaluated too, log-spaced up to the last
        assert curve["epoch"][0] == 1 and curve["epoch"][-1] == EPOCHS


def test_report_marks_the_secondary_summary_and_writes_its_plot(run, tmp_path):
    """The report writes a valid slope-by-epoch PNG, embeds it, and marks the summary."""
    built = report.report_of(run[0], str(tmp_path))
    path = built.paths["slope_by_epoch"]
    assert path.endswith("-slope-by-epoch.png")
    with open(path, "rb") as stream:
        image = Image.open(io.BytesIO(stream.read()))
        image.verify()
    assert image.format == "PNG"
    heading = "Beyond the notebook's question (pre-specified secondary summary)"
    for text in (built.text, built.markdown):
        assert heading in text
        assert text.index(heading) > text.index("Does the loss at epoch 100 fall")
    rules = len(built.answers.numbers["settings"][0]["secondary"]["rules"])
    assert len(built.answers.secondary) == rules
    assert built.markdown.count("data:image/png;base64,") == 3
