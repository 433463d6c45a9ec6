"""Reading results for a report: one row per model, the derived columns, old and odd files."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from report_runs import (
    BLOWN,
    EPOCHS,
    MAIN,
    N_TEST,
    N_TRAIN,
    NAN,
    SYNTHETIC_DIMS,
    SYNTHETIC_OPTIMIZERS,
    SYNTHETIC_SEEDS,
    TEST_POSITIVE,
    TRAIN_POSITIVE,
    as_version,
    curves_of,
    rows_of,
    synthetic_run,
    write_synthetic,
)

from irismodel import report, store
from irismodel.report.answers import answer_numbers
from irismodel.report.scan import scan
from irismodel.report.summary import summarize_models
from irismodel.report.text import plain, runs_text
from irismodel.report.wording import word_answers
from irismodel.store import schema


def test_the_failure_cases_are_real(frame):
    """lr 100 blows up with finite losses (not flagged diverged); lr 1e20 gives NaN/inf."""
    blown, nan = rows_of(frame, BLOWN), rows_of(frame, NAN)
    assert not blown.diverged.any() and (blown.final_train_loss > 2.0).all()
    assert nan.diverged.all() and all(not np.isfinite(c).all() for c in nan.loss_curve)


def test_older_rows_derive_diverged_and_say_the_rest_is_unknown(frame):
    """Without an outcome column a blown-up model is still diverged (its final loss is above its
    first); the others' outcome is unknown, said so, never guessed."""
    rows = pd.concat([rows_of(frame, BLOWN), rows_of(frame, MAIN)], ignore_index=True)
    old = rows.drop(columns=[c for c in schema.ADDED_IN_3 if c in rows])
    summary = report.summarize(old)
    blown = summary[summary.learning_rate == 100.0].iloc[0]
    assert blown.n_diverged == 3 and blown.n_unknown == 0
    main = summary[summary.learning_rate == 0.1]
    assert (main.n_unknown == main.n_seeds - main.n_diverged).all()
    assert main.stalled_rate.isna().all()
    answers = report.answer_questions(old)
    assert "outcome unknown (written by an older version)" in answers.question1
    assert "Reference check omitted: these results were written by an older version" in (
        answers.question1
    )


@pytest.mark.parametrize("version", ["1", "2"])
def test_older_result_files_are_read(folder, tmp_path, version):
    """Schema 1 and 2 files (no outcome, no reference columns; version 1 no class counts) read:
    the same counts of models, outcomes unknown, the reference check omitted with its reason,
    the majority class inferred from the metrics as it is read from the counts."""
    _, run_folders, _ = folder
    run = as_version(Path(run_folders[MAIN]), tmp_path / "results" / "iris-sweep-old", version)
    assert len(store.read_results(str(run))) == 54  # the results reader takes them too
    old = scan(str(run), 100)
    summary = summarize_models(old.models)
    assert (summary.n_unknown + summary.n_diverged == summary.n_seeds).all()
    words = word_answers(answer_numbers(old), plain).question1
    assert "Reference check omitted: these results were written by an older version" in words
    new = summarize_models(scan(run_folders[MAIN], 100).models)
    np.testing.assert_allclose(summary.train_majority_accuracy, new.train_majority_accuracy)


def test_epoch_past_the_end_falls_back_to_the_last(frame):
    """Asking for epoch 1000 of 120-epoch runs reads epoch 120, and the notes say so."""
    summary = report.summarize(frame, epoch=1000)
    assert (summary.epoch == EPOCHS).all()
    rows = rows_of(frame, MAIN)
    models = scan(rows, 1000).models
    last = {(r.hidden_dim, r.optimizer, r.seed): r.loss_curve[-1] for r in rows.itertuples()}
    keys = zip(models.hidden_dim, models.optimizer, models.seed, strict=True)
    assert list(models._loss) == [last[key] for key in keys]
    notes = " ".join(report.answer_questions(frame, epoch=1000).notes)
    assert f"no epoch 1000; their last epoch ({EPOCHS})" in notes


def test_no_rows_are_refused_naming_the_cause(frame):
    """A report of no rows, or of a run that is not there, raises naming the cause."""
    with pytest.raises(report.ReportError, match="no results rows to report on"):
        report.summarize(frame.iloc[:0])
    with pytest.raises(report.ReportError, match="no results rows of run\\(s\\) nope to report"):
        scan(frame, 100, run_ids=["nope"])


def test_sgd_and_manual_rows_are_one_configuration_never_shown_twice(frame):
    """The batched engine runs sgd and manual through one code path: their rows are identical,
    shown once as `sgd = manual`, and said to be so by construction."""
    rows = rows_of(frame, MAIN)
    sgd, manual = (rows[rows.optimizer == o].sort_values(["hidden_dim", "seed"]) for o in
                   ("sgd", "manual"))  # fmt: skip
    np.testing.assert_array_equal(np.stack(sgd.loss_curve), np.stack(manual.loss_curve))
    models = scan(rows, 100).models
    duplicates = models[models._duplicate]
    assert len(duplicates) == len(manual) and (duplicates.optimizer == "manual").all()
    assert set(models[models.optimizer == "sgd"]._rule) == {"sgd = manual"}
    summary = report.summarize(rows)
    assert "manual" not in set(summary.optimizer) and "sgd = manual" in set(summary.rules)
    answers = report.answer_questions(rows)
    numbers = answers.numbers["settings"][0]["question1"]
    assert numbers["manual_repeats_sgd"] is True and "manual" not in numbers["rules"]
    assert "identical by construction" in answers.question1
    assert "\n- manual:" not in answers.question2


def test_majority_accuracy_matches_the_split(frame, folder):
    """The majority-class accuracy equals max(p, 1-p) of the split's real labels, NaN for a
    part with no rows."""
    _, _, splits = folder
    for run_id, split in splits.items():
        models = scan(rows_of(frame, run_id), 100).models
        for part, labels in (("train", split.y_train), ("test", split.y_test)):
            inferred = models[f"_majority_{part}"]
            if len(labels) == 0:
                assert inferred.isna().all()
                continue
            share = labels.astype(np.float64).mean()
            np.testing.assert_allclose(inferred, max(share, 1 - share), rtol=1e-12)


def test_runs_repeating_a_configuration_count_each_seed_once(frame):
    """The same run read twice (a rerun) keeps one row per setting x configuration x seed."""
    rows = rows_of(frame, MAIN)
    again = rows.assign(
        flow_run_id="rerun", run_started_at=rows.run_started_at + pd.Timedelta(hours=1)
    )
    summary = report.summarize(pd.concat([rows, again], ignore_index=True))
    assert (summary.n_seeds == 6).all()


def test_a_streamed_folder_matches_numpy(synthetic, synthetic_report):
    """report_of on a folder of part files (a rerun replacing a run, a run in two parts, old and
    new columns): counts, the loss at epoch 100 and the majority class equal numpy's."""
    _, kept = synthetic
    scalars = kept.drop_columns(["loss_curve"]).to_pandas()
    curves = curves_of(kept).astype(np.float64)
    summary = synthetic_report.summary
    assert len(summary) == len(SYNTHETIC_DIMS) * len(SYNTHETIC_OPTIMIZERS)
    assert (summary.n_seeds == 4 * SYNTHETIC_SEEDS).all() and (summary.epoch == 100).all()
    for row in summary.itertuples():
        mine = (scalars.hidden_dim == row.hidden_dim) & (scalars.optimizer == row.optimizer)
        assert row.n_diverged == int((mine & scalars.diverged).sum())
        # every model whose own loss at epoch 100 is finite, whatever happened later
        counted = mine.to_numpy() & np.isfinite(curves[:, 99])
        assert row.loss_at_epoch_mean == pytest.approx(curves[counted, 99].mean(), rel=1e-12)
        assert row.loss_at_epoch_median == pytest.approx(np.median(curves[counted, 99]), rel=1e-12)
        assert 0 <= row.loss_at_epoch_low <= row.loss_at_epoch_mean <= row.loss_at_epoch_high
        assert row.train_majority_accuracy == pytest.approx(1 - TRAIN_POSITIVE / N_TRAIN)
    numbers = synthetic_report.answers.numbers["settings"][0]["question1"]
    assert numbers["majority_accuracy"] == pytest.approx(1 - TEST_POSITIVE / N_TEST)
    assert numbers["manual_repeats_sgd"] is False  # their accuracies differ: two configurations


def test_a_streamed_folder_keeps_only_the_runs_asked_for(synthetic):
    """Run ids filter rows as they are read."""
    found = scan(str(synthetic[0]), 100, run_ids=["run-2"])
    assert (summarize_models(found.models).n_seeds == SYNTHETIC_SEEDS).all()
    runs = runs_text(found.models, plain)
    assert runs.startswith("run-2 (") and "run-1" not in runs


def test_a_corrupt_or_foreign_file_is_named(tmp_path):
    """A results folder with a file that is not Parquet, or lacks the results columns, raises
    ResultsError naming the file; the command line exits 2 with that message."""
    table = synthetic_run("run-y", datetime(2026, 1, 1, tzinfo=UTC), np.arange(3), 20,
                          np.random.default_rng(1))  # fmt: skip
    folder = tmp_path / "results"
    write_synthetic(folder, [table])
    (folder / "iris-sweep-broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(store.ResultsError, match="iris-sweep-broken.parquet"):
        scan(str(folder), 100)
    (folder / "iris-sweep-broken.parquet").unlink()
    pq.write_table(table.drop_columns(["loss_curve"]), folder / "iris-sweep-other.parquet")
    with pytest.raises(store.ResultsError, match="iris-sweep-other.parquet.*no column loss_curve"):
        scan(str(folder), 100)
    assert report.main([str(folder), "--out", str(tmp_path / "out")]) == 2
