"""Tests for a shard's rows (`shard_table`): the values of rows built one model at a time."""

import dataclasses
import math
from datetime import UTC, datetime

import numpy as np
from evaluation_checks import assert_same_bits, einsum_probabilities, rank_metrics

from irismodel import sweep
from irismodel.data import load_dataset, split_dataset
from irismodel.engine import predict_proba, train_batched
from irismodel.metrics import METRIC_NAMES, binary_metrics
from irismodel.outcomes import baseline_loss, classify
from irismodel.parameters import SweepConfig
from irismodel.reference import check_against_reference
from irismodel.store.layout import STATUS_COMPLETE
from irismodel.store.schema import SCHEMA
from irismodel.sweep import RunContext, diverged_mask, shard_table

STARTED = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
SEEDS = [5, 6, 7, 8, 9, 10]


def _row(run, split, context, check, index, split_seed):
    """Model `index`'s row, every value computed for that model alone."""
    config, seed, curve = context.config, run.seeds[index], run.loss_curves[index]
    diverged = bool(diverged_mask(run)[index])
    one = {name: values[index : index + 1] for name, values in run.parameters.items()}
    row = {
        "flow_run_id": context.flow_run_id,
        "run_started_at": context.run_started_at,
        "run_status": STATUS_COMPLETE,
        "hidden_dim": run.hidden_dim,
        "optimizer": run.optimizer,
        "seed": seed,
        "learning_rate": run.learning_rate,
        "epochs": run.epochs,
        "test_size": config.test_size,
        "split_seed": split_seed,
        "standardize": config.standardize,
        "positive_class": split.positive_class,
        "data_source": split.data_source,
        "data_fingerprint": split.data_fingerprint,
        "n_train": len(split.y_train),
        "n_test": len(split.y_test),
        "n_train_positive": int(split.y_train.sum()),
        "n_test_positive": int(split.y_test.sum()),
        "device": run.device,
        "engine": run.engine,
        "worker": "host:1",
        "shard": "h9-sgd-0000",
        "loss_curve": curve.tolist(),
        "final_train_loss": float(curve[-1]),
        "diverged": diverged,
        "train_seconds": run.train_seconds / len(run.seeds),
        "baseline_loss": baseline_loss(split.x_train, split.y_train),
    }
    for part, x, y in (
        ("train", split.x_train, split.y_train),
        ("test", split.x_test, split.y_test),
    ):
        scores = binary_metrics(predict_proba(one, x), y, np.array([diverged]))
        row |= {f"{part}_{name}": float(scores[name][0]) for name in METRIC_NAMES}
    share = float(split.y_train.mean())
    majority = max(share, 1 - share)
    row["outcome"] = classify(
        curve[None], np.array([diverged]), row["baseline_loss"], [row["train_accuracy"]], majority
    )[0]
    checked = bool(check.checked[index])
    row["reference_checked"] = checked
    row["reference_epochs"] = check.epochs if checked else None
    row["reference_max_abs_diff"] = float(check.max_abs_diff[index]) if checked else None
    row["reference_agrees"] = bool(check.agrees[index]) if checked else None
    curve = check.curves[index]
    row["reference_loss_curve"] = None if curve is None else curve.tolist()
    for name, values in one.items():
        flat = values[0].reshape(-1).tolist()
        row[name.replace(".", "_")] = flat[0] if name == "fc2.bias" else flat
    return {name: None if _is_nan(value) and name.endswith(METRIC_NAMES) else value
            for name, value in row.items()}  # fmt: skip


def _is_nan(value):
    return isinstance(value, float) and math.isnan(value)


def _same(got, want):
    return got == want or (_is_nan(got) and _is_nan(want))


def test_rows_equal_rows_built_one_model_at_a_time(tmp_path):
    """Every column of a shard's table, constants included, holds the values and the type of
    rows built one model at a time: a diverged model (NaN losses), checked and unchecked ones."""
    split = split_dataset(load_dataset(), test_size=0.25, split_seed=3)
    config = SweepConfig(test_size=0.25, standardize=False, output_dir=str(tmp_path))
    context = RunContext("run-1", STARTED, config, place=None)  # rows never read the place
    trained = train_batched(split.x_train, split.y_train, 9, "sgd", SEEDS, 0.1, 12)
    check = check_against_reference(split, trained, 0.1, {6, 9}, 12)
    curves = trained.loss_curves.copy()
    curves[2, 7:] = np.nan
    weights = {name: values.copy() for name, values in trained.parameters.items()}
    weights["fc1.weight"][2, 1, 3] = np.nan  # a diverged model's weights are kept as they are
    run = dataclasses.replace(trained, loss_curves=curves, parameters=weights)

    table = shard_table(run, split, context, "h9-sgd-0000", "host:1", check, 3)

    assert table.schema.equals(SCHEMA)
    want = [_row(run, split, context, check, i, 3) for i in range(len(SEEDS))]
    assert [row["diverged"] for row in want] == [False, False, True, False, False, False]
    assert [row["reference_checked"] for row in want] == [False, True, False, False, True, False]
    for name in SCHEMA.names:
        column = table.column(name)
        assert column.type == SCHEMA.field(name).type, name
        assert column.null_count == sum(row[name] is None for row in want), name
        got = column.to_pylist()
        for index, row in enumerate(want):
            value = row[name]
            if isinstance(value, list):
                assert np.array_equal(got[index], value, equal_nan=True), (name, index)
            else:
                assert _same(got[index], value), (name, index, got[index], value)


def test_metric_columns_equal_the_einsum_and_rank_formulation(evaluation, monkeypatch, tmp_path):
    """A shard's metric columns and outcomes, evaluated a few models at a time, equal the einsum
    forward pass and the average-rank metrics to the last bit, diverged models included."""
    monkeypatch.setattr(sweep, "METRICS_VALUES", 8000)  # chunks of a few models
    split = split_dataset(load_dataset(), split_seed=2)
    context = RunContext("run-1", STARTED, SweepConfig(output_dir=str(tmp_path)), place=None)
    baseline = baseline_loss(split.x_train, split.y_train)
    majority = max(split.y_train.mean(), 1 - split.y_train.mean())
    for h, optimizer, rate in ((3, "sgd", 0.1), (12, "manual-no-zero-grad", 0.1), (7, "sgd", 1e25)):
        run = train_batched(split.x_train, split.y_train, h, optimizer, range(60), rate, 20)
        check = check_against_reference(split, run, rate, set(), 20)
        table = shard_table(run, split, context, "shard", "host:1", check, 2)
        diverged = diverged_mask(run)
        for part in ("train", "test"):
            x, y = getattr(split, f"x_{part}"), getattr(split, f"y_{part}")
            want = rank_metrics(einsum_probabilities(run.parameters, x), y, diverged)
            for name in METRIC_NAMES:
                got = table[f"{part}_{name}"].to_numpy(zero_copy_only=False)  # null: NaN
                assert_same_bits(got, want[name], f"hidden_dim {h}: {part}_{name}")
            if part == "train":
                outcome = classify(run.loss_curves, diverged, baseline, want["accuracy"], majority)
        assert table["outcome"].to_pylist() == outcome.tolist()
    assert diverged.any()  # in the last run
