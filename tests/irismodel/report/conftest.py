"""The report tests' results, made once a session: four real runs, two splits, a synthetic set."""

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest
from report_runs import (
    BLOWN,
    MAIN,
    NAN,
    NOT_HELD_OUT,
    RULES,
    SYNTHETIC_EPOCHS,
    SYNTHETIC_SEEDS,
    real_run,
    synthetic_run,
    write_synthetic,
)

from irismodel import report, store


@pytest.fixture(scope="session")
def folder(tmp_path_factory):
    """Four real runs: the three rules, a blown-up one, a NaN one, one evaluated on its training
    rows. Returns the folder, the run folders and the splits by run id."""
    folder = tmp_path_factory.mktemp("results")
    runs = {
        MAIN: real_run(folder, MAIN, 0, hidden_dims=[8, 9, 10], optimizers=RULES, seeds="0..5"),
        BLOWN: real_run(folder, BLOWN, 1, hidden_dims=[8], optimizers=["sgd"], seeds="0..2",
                        learning_rate=100.0),
        NAN: real_run(folder, NAN, 2, hidden_dims=[8], optimizers=["sgd"], seeds="0..2",
                      learning_rate=1e20),
        NOT_HELD_OUT: real_run(folder, NOT_HELD_OUT, 3, hidden_dims=[8], seeds="0..4",
                               optimizers=["sgd", "manual-no-zero-grad"], test_size=0.0),
    }  # fmt: skip
    return folder, {k: v[0] for k, v in runs.items()}, {k: v[1] for k, v in runs.items()}


@pytest.fixture(scope="session")
def frame(folder):
    return store.read_results(str(folder[0]))


@pytest.fixture(scope="session")
def main_report(folder):
    """The report of the main run, its files beside its Parquet, named after it, as the flow's."""
    run = folder[1][MAIN]
    return report.report_of(run, run_ids=[MAIN], prefix=report.report_prefix(run))


@pytest.fixture(scope="session")
def two_splits(tmp_path_factory):
    """One real run over two splits (sgd and the notebook's second loop); its folder and rows."""
    folder = tmp_path_factory.mktemp("two-splits")
    path, _ = real_run(folder, "run-two-splits", 0, hidden_dims=[8, 9, 10], seeds="0..5",
                       optimizers=["sgd", "manual-no-zero-grad"], split_seeds="0..1")  # fmt: skip
    return path, store.read_results(path)


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """Four synthetic runs' files, one in two parts, and a later rerun that replaces run-0;
    returns the folder and the rows a report keeps."""
    folder = tmp_path_factory.mktemp("synthetic") / "results"
    rng = np.random.default_rng(7)
    seeds = [np.arange(i * SYNTHETIC_SEEDS, (i + 1) * SYNTHETIC_SEEDS) for i in range(4)]
    runs = [
        synthetic_run(f"run-{i}", datetime(2026, 1, 1, i, tzinfo=UTC), seeds[i], SYNTHETIC_EPOCHS,
                      rng, new_columns=i % 2 == 0)
        for i in range(4)
    ]  # fmt: skip
    rerun = synthetic_run("run-0-again", datetime(2026, 1, 2, tzinfo=UTC), seeds[0],
                          SYNTHETIC_EPOCHS, rng)  # fmt: skip
    half = len(runs[2]) // 2
    write_synthetic(folder, [runs[0], runs[1], runs[2].slice(0, half), runs[2].slice(half),
                             runs[3], rerun])  # fmt: skip
    common = runs[1].column_names  # an old-style run: no outcome, no positive counts
    kept = pa.concat_tables([t.select(common) for t in (runs[1], runs[2], runs[3], rerun)])
    return folder, kept


@pytest.fixture(scope="session")
def synthetic_report(synthetic, tmp_path_factory):
    """The report of the synthetic folder, streamed from its part files."""
    return report.report_of(str(synthetic[0]), out_dir=str(tmp_path_factory.mktemp("synthetic")))
