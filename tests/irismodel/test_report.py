"""The report answers both questions right on a small real results folder, a diverged run too."""

from __future__ import annotations

import base64
import io
import math
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from scipy import stats

from irismodel import report, results
from irismodel.config import check_data, validate_config
from irismodel.sweep import run_sweep

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EPOCHS = 150
MAIN = "run-main"
DIVERGED = "run-diverged"
NOT_HELD_OUT = "run-not-held-out"


def _run(folder, run_id, minute, **parameters):
    """Run the flow's library path without Prefect: validate, split, train, evaluate, write."""
    config = validate_config(output_dir=str(folder), device="cpu", epochs=EPOCHS, **parameters)
    run_sweep(config, run_id, datetime(2026, 1, 2, 3, minute, tzinfo=UTC))
    return check_data(config)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three real runs: sgd vs manual, a diverged sgd (lr 1e20), no-zero-grad on all rows."""
    folder = tmp_path_factory.mktemp("results")
    splits = {
        MAIN: _run(
            folder, MAIN, 0, hidden_dims=[8, 9, 10], optimizers=["sgd", "manual"],
            seeds=[0, 1, 2, 3, 4],
        ),
        DIVERGED: _run(
            folder, DIVERGED, 1, hidden_dims=[8], optimizers=["sgd"], seeds=[0, 1, 2],
            learning_rate=1e20,
        ),
        NOT_HELD_OUT: _run(
            folder, NOT_HELD_OUT, 2, hidden_dims=[8], optimizers=["sgd", "manual-no-zero-grad"],
            seeds=[0, 1, 2, 3, 4], test_size=0.0,
        ),
    }  # fmt: skip
    return folder, splits


@pytest.fixture(scope="module")
def frame(folder):
    return results.read_results(str(folder[0]))


def _rows(frame, run_id):
    return frame[frame.flow_run_id == run_id].reset_index(drop=True)


def test_the_diverged_run_really_diverged(frame):
    """The lr=1e20 run is flagged diverged with NaN/inf in its curves: the case is real."""
    diverged = _rows(frame, DIVERGED)
    assert diverged.diverged.all() and not _rows(frame, MAIN).diverged.any()
    assert all(not np.isfinite(curve).all() for curve in diverged.loss_curve)


def test_summary_has_one_row_per_configuration_and_setting(frame):
    """One row per (setting, hidden_dim, optimizer), counting seeds and diverged seeds."""
    summary = report.summarize(frame)
    assert {"learning_rate", "test_size"} <= set(summary.columns)
    keys = list(
        zip(
            summary.learning_rate,
            summary.test_size,
            summary.hidden_dim,
            summary.optimizer,
            strict=True,
        )
    )
    expected = {(0.1, 0.25, h, o) for h in (8, 9, 10) for o in ("sgd", "manual")}
    expected |= {(1e20, 0.25, 8, "sgd"), (0.1, 0.0, 8, "sgd"), (0.1, 0.0, 8, "manual-no-zero-grad")}
    assert len(keys) == len(set(keys)) and set(keys) == expected
    assert (summary.n_seeds == np.where(summary.learning_rate == 1e20, 3, 5)).all()
    assert (summary.n_diverged == np.where(summary.learning_rate == 1e20, 3, 0)).all()


def test_summary_statistics_match_an_independent_computation(frame):
    """Loss at epoch 100 is loss_curve[99]; its mean and t-interval match scipy's over seeds."""
    summary = report.summarize(frame, epoch=100)
    row = summary[(summary.hidden_dim == 9) & (summary.optimizer == "sgd")].iloc[0]
    rows = _rows(frame, MAIN)
    rows = rows[(rows.hidden_dim == 9) & (rows.optimizer == "sgd")]
    losses = np.array([curve[99] for curve in rows.loss_curve], dtype=np.float64)
    low, high = stats.t.interval(0.95, len(losses) - 1, losses.mean(), stats.sem(losses))
    assert row.epoch == 100 and row.n_seeds == 5
    np.testing.assert_allclose(
        [row.loss_at_epoch_mean, row.loss_at_epoch_ci_low, row.loss_at_epoch_ci_high],
        [losses.mean(), low, high],
        rtol=1e-12,
    )
    for name in ("loss_at_epoch", "final_loss", "train_accuracy", "test_accuracy"):
        main = summary[summary.learning_rate == 0.1]
        main = main[main.test_size > 0]
        assert (main[f"{name}_ci_low"] <= main[f"{name}_mean"] + 1e-12).all()
        assert (main[f"{name}_mean"] <= main[f"{name}_ci_high"] + 1e-12).all()


def test_diverged_seeds_are_counted_not_averaged(frame):
    """A configuration whose seeds all diverged has NaN means, no error, and a note saying so."""
    summary = report.summarize(frame)
    diverged = summary[summary.learning_rate == 1e20].iloc[0]
    assert diverged.n_diverged == 3 and math.isnan(diverged.loss_at_epoch_mean)
    assert math.isnan(diverged.stuck_share)
    answers = report.answer_questions(frame)
    assert any("3 of" in note and "diverged" in note for note in answers.notes)
    assert "3 diverged" in answers.question1
    table = report.summary_table(summary)
    assert (table.loc[summary.learning_rate == 1e20, "final loss [95% CI]"] == "n/a").all()


def test_one_seed_gives_no_interval():
    """With one seed the mean is kept and the interval and deviation are NaN, said in words."""
    n, mean, std, low, high = report.mean_interval([0.5, math.nan])
    assert (n, mean) == (1, 0.5) and all(math.isnan(v) for v in (std, low, high))
    assert "no CI" in report._interval_text(mean, low, high)


def test_epoch_past_the_end_falls_back_to_the_last(frame):
    """Asking for epoch 1000 of 150-epoch runs reads epoch 150 and says so."""
    summary = report.summarize(frame, epoch=1000)
    assert (summary.epoch == EPOCHS).all()
    rows = _rows(frame, MAIN)
    np.testing.assert_array_equal(
        report.loss_at_epoch(rows, 1000), [curve[-1] for curve in rows.loss_curve]
    )
    notes = " ".join(report.answer_questions(frame, epoch=1000).notes)
    assert f"no epoch 1000; their last epoch ({EPOCHS})" in notes


def test_bad_epoch_is_refused(frame):
    """Epoch 0 is not an epoch: epochs are 1-based."""
    with pytest.raises(report.ReportError, match="epoch: 0 is not allowed"):
        report.summarize(frame, epoch=0)


def test_empty_results_are_refused(frame):
    """A report of no rows raises, naming the cause."""
    with pytest.raises(report.ReportError, match="no results rows"):
        report.summarize(frame.iloc[:0])


def test_majority_accuracy_matches_the_split(frame, folder):
    """The inferred majority-class accuracy equals max(p, 1-p) of the split's real labels."""
    _, splits = folder
    for run_id, split in splits.items():
        rows = _rows(frame, run_id)
        for part, labels in (("train", split.y_train), ("test", split.y_test)):
            inferred = report.majority_accuracy(rows, part)
            if len(labels) == 0:
                assert inferred.isna().all()
                continue
            share = labels.astype(np.float64).mean()
            np.testing.assert_allclose(inferred, max(share, 1 - share), rtol=1e-12)


def test_stuck_share_matches_its_definition(frame, folder):
    """stuck_share = share of non-diverged seeds with train accuracy within 0.02 of majority."""
    _, splits = folder
    summary = report.summarize(_rows(frame, MAIN))
    share = splits[MAIN].y_train.astype(np.float64).mean()
    majority = max(share, 1 - share)
    rows = _rows(frame, MAIN)
    for record in summary.itertuples():
        mine = rows[(rows.hidden_dim == record.hidden_dim) & (rows.optimizer == record.optimizer)]
        expected = (np.abs(mine.train_accuracy - majority) <= report.STUCK_TOLERANCE).mean()
        assert record.stuck_share == pytest.approx(expected)


def test_manual_matches_sgd_exactly(frame):
    """With gradients reset, manual's loss curves equal sgd's: largest difference exactly 0.0."""
    answers = report.answer_questions(_rows(frame, MAIN))
    numbers = answers.numbers["settings"][0]["question1"]
    assert numbers["manual_vs_sgd_max_abs_difference"] == 0.0
    assert numbers["manual_matches_sgd_exactly"] is True
    assert "manual matched sgd exactly" in answers.question1
    assert "largest absolute difference of the loss curves is 0.0" in answers.question1


def test_trend_matches_scipy_spearman(frame):
    """Question 2's rho and p equal scipy.stats.spearmanr of loss@100 against hidden_dim."""
    rows = _rows(frame, MAIN)
    answers = report.answer_questions(rows)
    trend = {t["optimizer"]: t for t in answers.numbers["settings"][0]["question2"]}
    for optimizer in ("sgd", "manual"):
        mine = rows[rows.optimizer == optimizer]
        losses = [curve[99] for curve in mine.loss_curve]
        rho, p = stats.spearmanr(mine.hidden_dim, losses)
        assert 0.0 <= trend[optimizer]["p_value"] <= 1.0
        assert trend[optimizer]["spearman_rho"] == pytest.approx(rho)
        assert trend[optimizer]["p_value"] == pytest.approx(p)
        assert trend[optimizer]["n_models"] == 15
    words = "no monotonic trend at p" if trend["sgd"]["p_value"] >= 0.05 else "as hidden_dim grows"
    assert words in answers.question2 and "over 5 seeds x 3 hidden_dims" in answers.question2


def test_not_held_out_is_said_and_train_accuracy_used(frame):
    """With test_size 0 the answer says the data was not held out and uses train accuracy."""
    rows = _rows(frame, NOT_HELD_OUT)
    answers = report.answer_questions(rows)
    numbers = answers.numbers["settings"][0]["question1"]
    assert numbers["accuracy_part"] == "train"
    assert "NOT held out" in answers.question1
    nzg = rows[rows.optimizer == "manual-no-zero-grad"]
    assert numbers["optimizers"]["manual-no-zero-grad"]["mean"] == pytest.approx(
        nzg.train_accuracy.mean()
    )
    drop = numbers["no_zero_grad_accuracy_drop"]
    sgd = rows[rows.optimizer == "sgd"].sort_values(["hidden_dim", "seed"])
    expected = (
        sgd.train_accuracy.to_numpy()
        - nzg.sort_values(["hidden_dim", "seed"]).train_accuracy.to_numpy()
    )
    assert drop["n"] == 5 and drop["mean"] == pytest.approx(expected.mean())
    assert "never resets its gradients" in answers.question1


def test_held_out_accuracy_is_used_when_there_is_a_test_split(frame):
    """With a test split, question 1 reports test accuracy, labelled held-out."""
    answers = report.answer_questions(_rows(frame, MAIN))
    assert answers.numbers["settings"][0]["question1"]["accuracy_part"] == "test"
    assert "Held-out accuracy" in answers.question1


def test_runs_repeating_a_configuration_count_each_seed_once(frame):
    """The same run read twice (a rerun) keeps one row per setting x configuration x seed."""
    rows = _rows(frame, MAIN)
    again = rows.assign(
        flow_run_id="rerun", run_started_at=rows.run_started_at + pd.Timedelta(hours=1)
    )
    summary = report.summarize(pd.concat([rows, again], ignore_index=True))
    assert (summary.n_seeds == 5).all()


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
        return image.size


def test_plots_are_valid_pngs_of_the_expected_size(frame, tmp_path):
    """Both plots are PNGs sized by their panels at 100 dpi, and small."""
    rows = _rows(frame, MAIN)
    loss = report.plot_loss_curves(rows, str(tmp_path / "loss.png"))
    accuracy = report.plot_test_accuracy(frame, str(tmp_path / "accuracy.png"))
    # loss: two optimizer panels side by side; accuracy: three settings side by side
    assert _png_size(Path(loss).read_bytes()) == (920, 380)
    assert _png_size(Path(accuracy).read_bytes()) == (1380, 400)
    assert os.path.getsize(loss) < 150_000 and os.path.getsize(accuracy) < 150_000


def test_markdown_embeds_the_plots_and_answers(frame, tmp_path):
    """The markdown has both answers, the table, and PNGs as data URIs that decode."""
    built = report.build_report(_rows(frame, MAIN), str(tmp_path), prefix="_r")
    markdown = built.markdown
    assert markdown.count("data:image/png;base64,") == 2
    for chunk in markdown.split("data:image/png;base64,")[1:]:
        _png_size(base64.b64decode(chunk.split(")", 1)[0]))
    assert "## 1. Is the model good" in markdown and "## 2. Does the loss at epoch 100" in markdown
    assert "| hidden_dim | optimizer | seeds |" in markdown
    assert len(markdown) < 400_000  # well under what an artifact can hold
    assert set(built.paths) == {"loss_curves", "accuracy", "markdown", "text"}
    assert Path(built.paths["markdown"]).read_text() == markdown


def test_write_report_filters_runs(folder):
    """write_report with run ids reports only those runs."""
    location, _ = folder
    out = location / "filtered"
    paths = report.write_report(str(location), str(out), run_ids=[NOT_HELD_OUT])
    text = Path(paths["text"]).read_text()
    assert "manual-no-zero-grad" in text and "1e+20" not in text and " 10 " not in text


def test_module_command_prints_the_answers(folder):
    """`python -m irismodel.report FOLDER` exits 0, prints both answers, writes the plots."""
    location, _ = folder
    done = subprocess.run(
        [sys.executable, "-m", "irismodel.report", str(location), "--run", MAIN, "--epoch", "100"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "1. Is the model good" in done.stdout and "2. Does the loss at epoch 100" in done.stdout
    assert "manual matched sgd exactly" in done.stdout
    assert (location / "_iris-sweep-report-loss-curves.png").is_file()
    # the report files beside the Parquet are skipped by the results reader
    assert len(results.read_results(str(location))) == 30 + 3 + 10


def test_module_command_refuses_an_unknown_run(folder, capsys):
    """An unknown run id exits 2 with a message naming it."""
    location, _ = folder
    assert report.main([str(location), "--run", "no-such-run"]) == 2
    assert "no results rows of run(s) no-such-run" in capsys.readouterr().err


def test_display_order_names_every_registered_optimizer():
    """The report's optimizer order names exactly the registry's optimizers."""
    from irismodel.optimizers import OPTIMIZERS

    assert set(report.OPTIMIZER_ORDER) == set(OPTIMIZERS)


# --------------------------------------------------------------------------- synthetic, at scale

SYNTHETIC_DIMS = (4, 8, 16, 32)
SYNTHETIC_OPTIMIZERS = ("sgd", "manual", "manual-no-zero-grad", "momentum", "adam")
N_TRAIN, N_TEST, TRAIN_POSITIVE, TEST_POSITIVE = 112, 38, 37, 13


def synthetic_run(
    run_id: str,
    started: datetime,
    seeds: np.ndarray,
    epochs: int,
    rng: np.random.Generator,
    *,
    new_columns: bool = True,
    learning_rate: float = 0.1,
) -> pa.Table:
    """One run's results: every hidden_dim x optimizer x seed, float32 curves, a few diverged.

    manual's curves equal sgd's (same hidden_dim and seed), as the real update guarantees;
    accuracy, precision and recall come from one confusion matrix, so the majority class can
    be inferred from them as well as read from `n_*_positive` (written when `new_columns`).
    """
    dims, optimizers, seed = (
        a.ravel()
        for a in np.meshgrid(
            np.array(SYNTHETIC_DIMS), np.arange(len(SYNTHETIC_OPTIMIZERS)), seeds, indexing="ij"
        )
    )
    n = len(seed)
    kind = np.where(optimizers == 1, 0, optimizers)  # manual draws sgd's curve
    keys, which = np.unique(
        np.stack([dims, kind, np.searchsorted(seeds, seed)]), axis=1, return_inverse=True
    )
    k = keys.shape[1]
    t = np.arange(epochs, dtype=np.float32)
    start = rng.uniform(0.5, 0.8, k).astype(np.float32)
    floor = rng.uniform(0.01, 0.4, k).astype(np.float32)
    tau = rng.uniform(5, epochs / 2, k).astype(np.float32)
    curves = floor[:, None] + (start - floor)[:, None] * np.exp(-t[None, :] / tau[:, None])
    curves += np.abs(rng.standard_normal((k, epochs), dtype=np.float32)) * np.float32(0.01)
    curves = curves[which.ravel()]
    diverged = (optimizers == 2) & (rng.random(n) < 0.02)
    curves[diverged, epochs // 2 :] = np.nan
    columns: dict[str, Any] = {}
    for part, size, positive in (
        ("train", N_TRAIN, TRAIN_POSITIVE),
        ("test", N_TEST, TEST_POSITIVE),
    ):
        true_pos = rng.integers(1, positive + 1, n)
        false_pos = rng.integers(0, (size - positive) // 3, n)
        columns[f"{part}_accuracy"] = (true_pos + size - positive - false_pos) / size
        columns[f"{part}_precision"] = true_pos / (true_pos + false_pos)
        columns[f"{part}_recall"] = true_pos / positive
    values = {
        "flow_run_id": pa.array([run_id] * n),
        "run_started_at": pa.array([started] * n, pa.timestamp("us", tz="UTC")),
        "run_status": pa.array(["complete"] * n),
        "hidden_dim": pa.array(dims.astype(np.int32)),
        "optimizer": pa.array(np.array(SYNTHETIC_OPTIMIZERS)[optimizers]),
        "seed": pa.array(seed.astype(np.int64)),
        "learning_rate": pa.array(np.full(n, learning_rate)),
        "epochs": pa.array(np.full(n, epochs, dtype=np.int32)),
        "test_size": pa.array(np.full(n, 0.25)),
        "split_seed": pa.array(np.zeros(n, dtype=np.int64)),
        "standardize": pa.array(np.zeros(n, dtype=bool)),
        "positive_class": pa.array(["versicolor"] * n),
        "data_fingerprint": pa.array(["f" * 64] * n),
        "n_train": pa.array(np.full(n, N_TRAIN, dtype=np.int32)),
        "n_test": pa.array(np.full(n, N_TEST, dtype=np.int32)),
        "loss_curve": pa.ListArray.from_arrays(
            pa.array(np.arange(n + 1, dtype=np.int32) * epochs), pa.array(curves.ravel())
        ),
        "final_train_loss": pa.array(np.where(diverged, np.nan, curves[:, -1]).astype(np.float64)),
        "diverged": pa.array(diverged),
        **{name: pa.array(column) for name, column in columns.items()},
    }
    if new_columns:
        values["outcome"] = pa.array(np.where(diverged, "diverged", "converged"))
        values["n_train_positive"] = pa.array(np.full(n, TRAIN_POSITIVE, dtype=np.int32))
        values["n_test_positive"] = pa.array(np.full(n, TEST_POSITIVE, dtype=np.int32))
    return pa.table(values)


def write_synthetic(folder: Path, tables: list[pa.Table]) -> list[Path]:
    """Write each table as its own results file, as a run's part files are."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, table in enumerate(tables):
        path = folder / f"iris-sweep-part-{i:05d}.parquet"
        pq.write_table(table, path, compression="zstd")
        paths.append(path)
    return paths


SYNTHETIC_EPOCHS = 200


def _curves_of(table: pa.Table) -> np.ndarray:
    return table.column("loss_curve").combine_chunks().flatten().to_numpy().reshape(len(table), -1)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """20,000 models x 200 epochs in four runs' files, and a later rerun that replaces run-0."""
    folder = tmp_path_factory.mktemp("synthetic") / "results"
    rng = np.random.default_rng(7)
    runs = [
        synthetic_run(
            f"run-{i}", datetime(2026, 1, 1, i, tzinfo=UTC), np.arange(i * 250, (i + 1) * 250),
            SYNTHETIC_EPOCHS, rng, new_columns=i % 2 == 0,
        )
        for i in range(4)
    ]  # fmt: skip
    rerun = synthetic_run(
        "run-0-again", datetime(2026, 1, 2, tzinfo=UTC), np.arange(250), SYNTHETIC_EPOCHS, rng
    )
    # a run in several part files, as the new layout writes them
    parts = [runs[0], runs[1], runs[2].slice(0, 1000), runs[2].slice(1000), runs[3], rerun]
    write_synthetic(folder, parts)
    common = runs[1].column_names  # an old-style run: no outcome, no positive counts
    kept = pa.concat_tables([t.select(common) for t in (runs[1], runs[2], runs[3], rerun)])
    return folder, kept


def test_a_streamed_folder_matches_numpy(synthetic, tmp_path):
    """report_of on a folder of part files: counts, loss at epoch 100, majority class, and the
    plotted mean and percentiles per epoch equal a direct numpy computation of the latest runs."""
    folder, kept = synthetic
    built = report.report_of(str(folder), out_dir=str(tmp_path))
    scalars = kept.drop_columns(["loss_curve"]).to_pandas()
    curves = _curves_of(kept).astype(np.float64)
    summary, plotted = built.summary, built.curves
    assert len(summary) == len(SYNTHETIC_DIMS) * len(SYNTHETIC_OPTIMIZERS)
    assert (summary.n_seeds == 1000).all() and (summary.epoch == 100).all()
    for row in summary.itertuples():
        mine = (scalars.hidden_dim == row.hidden_dim) & (scalars.optimizer == row.optimizer)
        ok = (mine & ~scalars.diverged).to_numpy()
        assert row.n_diverged == int((mine & scalars.diverged).sum())
        assert row.loss_at_epoch_mean == pytest.approx(curves[ok, 99].mean(), rel=1e-12)
        assert row.train_majority_accuracy == pytest.approx(1 - TRAIN_POSITIVE / N_TRAIN)
        drawn = plotted[
            (plotted.hidden_dim == row.hidden_dim) & (plotted.optimizer == row.optimizer)
        ]
        assert list(drawn.epoch) == list(range(1, SYNTHETIC_EPOCHS + 1))
        assert (drawn.n == ok.sum()).all()
        np.testing.assert_allclose(drawn["mean"], curves[ok].mean(axis=0), rtol=1e-9)
        low, median, high = np.quantile(curves[ok], [0.1, 0.5, 0.9], axis=0)
        # percentiles come from log-spaced histograms, 9% wide bins: close, not exact
        np.testing.assert_allclose(drawn["median"], median, rtol=0.03)
        np.testing.assert_allclose(drawn["q10"], low, rtol=0.05)
        np.testing.assert_allclose(drawn["q90"], high, rtol=0.05)
    numbers = built.answers.numbers["settings"][0]["question1"]
    assert numbers["manual_matches_sgd_exactly"] is True
    assert numbers["manual_vs_sgd_pairs"] == len(SYNTHETIC_DIMS) * 1000
    assert numbers["majority_accuracy"] == pytest.approx(1 - TEST_POSITIVE / N_TEST)
    assert "10-90% of seeds" not in built.markdown  # the plot says it; PNGs are valid
    for name in ("loss_curves", "accuracy"):
        _png_size(Path(built.paths[name]).read_bytes())


def test_a_streamed_folder_keeps_only_the_runs_asked_for(synthetic, tmp_path):
    """Run ids filter rows as they are read."""
    folder, _ = synthetic
    built = report.report_of(str(folder), out_dir=str(tmp_path), run_ids=["run-2"])
    assert (built.summary.n_seeds == 250).all()
    assert "run-2 (" in built.markdown and "run-1 (" not in built.markdown


def test_the_drawn_epochs_are_few_and_include_the_epoch_of_interest():
    """Long curves are drawn through at most ~200 epochs: the first, the last and epoch 100."""
    grid = report._grid(100_000, 100) + 1
    assert len(grid) <= 202 and {1, 100, 100_000} <= set(grid.tolist())
    assert (np.diff(grid) > 0).all()
    assert list(report._grid(150, 100) + 1) == list(range(1, 151))


def test_a_differing_manual_curve_is_measured_exactly(tmp_path, monkeypatch):
    """One manual curve off by 0.25 at one epoch: the largest difference is that, read from a
    run split over two files in several bounded passes, and the same from a DataFrame."""
    table = synthetic_run("run-x", datetime(2026, 1, 1, tzinfo=UTC), np.arange(30), 50,
                          np.random.default_rng(3))  # fmt: skip
    curves = _curves_of(table).copy()
    manual = np.flatnonzero(table.column("optimizer").to_numpy(zero_copy_only=False) == "manual")
    row = manual[7]
    before = curves[row, 9]
    curves[row, 9] = before + np.float32(0.25)
    expected = float(curves[row, 9]) - float(before)
    offsets = pa.array(np.arange(len(table) + 1, dtype=np.int32) * 50)
    table = table.set_column(
        table.schema.get_field_index("loss_curve"),
        "loss_curve",
        pa.ListArray.from_arrays(offsets, pa.array(curves.ravel())),
    )
    folder = tmp_path / "results"
    write_synthetic(folder, [table.slice(0, 1000), table.slice(1000)])
    monkeypatch.setattr(report, "DIFFERENCE_VALUES", 64)  # a pass per pair or so
    built = report.report_of(str(folder), out_dir=str(tmp_path / "out"))
    numbers = built.answers.numbers["settings"][0]["question1"]
    assert numbers["manual_matches_sgd_exactly"] is False
    assert numbers["manual_vs_sgd_max_abs_difference"] == expected
    assert f"largest absolute difference of the loss curves is {expected:.3g}" in (
        built.answers.question1
    )
    again = report.answer_questions(table.to_pandas()).numbers["settings"][0]["question1"]
    assert again["manual_vs_sgd_max_abs_difference"] == expected


def test_values_from_the_data_cannot_inject_html_or_break_the_table(frame, tmp_path):
    """A class name and a run id holding HTML, a pipe and a newline reach the markdown escaped:
    no raw tag, and every table row has as many cells as the header."""
    evil = "<img src=x onerror=alert(1)>|x"
    rows = _rows(frame, MAIN)
    other = rows.assign(
        positive_class=evil,
        flow_run_id="<b>run</b>|\nx",
        run_started_at=rows.run_started_at + pd.Timedelta(hours=1),
    )
    built = report.build_report(pd.concat([rows, other], ignore_index=True), str(tmp_path))
    markdown = built.markdown
    assert "<img" not in markdown and "<b>" not in markdown and "|\nx" not in markdown
    assert "&lt;img src=x onerror=alert\\(1\\)&gt;\\|x" in markdown
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    cells = len(re.split(r"(?<!\\)\|", table[0]))
    assert len(table) == 2 + 12
    for line in table:
        assert len(re.split(r"(?<!\\)\|", line)) == cells
    assert sum("\\|x" in line for line in table) == 6
    assert "positive_class=&lt;img" in markdown  # the answers name the setting, escaped
    assert evil in built.text  # the terminal shows the value as it is, on one line
    # matplotlib reads $...$ as math: a class named like broken math still plots
    broken = other.assign(positive_class="$\\frac{$", flow_run_id="run-$")
    report.build_report(pd.concat([rows, broken], ignore_index=True), str(tmp_path), prefix="_m")


def test_a_corrupt_or_foreign_file_is_named(tmp_path):
    """A results folder with a file that is not Parquet, or lacks the results columns, raises
    ResultsError naming the file; the command line exits 2 with that message."""
    table = synthetic_run("run-y", datetime(2026, 1, 1, tzinfo=UTC), np.arange(3), 20,
                          np.random.default_rng(1))  # fmt: skip
    folder = tmp_path / "results"
    write_synthetic(folder, [table])
    (folder / "iris-sweep-broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(results.ResultsError, match="iris-sweep-broken.parquet"):
        report.report_of(str(folder), out_dir=str(tmp_path / "out"))
    (folder / "iris-sweep-broken.parquet").unlink()
    pq.write_table(table.drop_columns(["loss_curve"]), folder / "iris-sweep-other.parquet")
    assert report.main([str(folder), "--out", str(tmp_path / "out")]) == 2
