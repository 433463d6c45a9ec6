"""The reference check: the engine against the notebook's loops, and the loops compared."""

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from report_runs import BLOWN, MAIN, RULES, rewrite, rows_of

from irismodel import report
from irismodel.report.answers import answer_numbers
from irismodel.report.reference import REFERENCE_TOLERANCE
from irismodel.report.scan import scan
from irismodel.report.text import plain
from irismodel.report.wording import word_answers


def _check(answers: report.Answers) -> dict:
    return answers.numbers["settings"][0]["question1"]["reference"]


def test_the_reference_check_compares_the_notebooks_loops(frame):
    """Question 1 from the reference runs: manual's and sgd's notebook curves compared, and
    how closely the engine reproduced each rule, from the stored columns and the curves."""
    rows = rows_of(frame, MAIN)
    answers = report.answer_questions(rows)
    check = _check(answers)
    checked = rows[rows.reference_checked]
    # 3 seeds spread over the run (the first, the middle, the last) at each of 3 hidden_dims
    assert {r: c["n_checked"] for r, c in check["rules"].items()} == {r: 9 for r in RULES}
    assert sorted(set(checked.seed)) == [0, 2, 5]
    for rule in ("sgd", "manual"):
        mine = checked[checked.optimizer == rule]
        assert check["rules"][rule]["max_abs_diff"] >= mine.reference_max_abs_diff.max()
        assert check["rules"][rule]["max_abs_diff"] <= REFERENCE_TOLERANCE
        assert not check["rules"][rule]["flagged"]
    pair = check["pairs"]["manual"]
    sgd = checked[checked.optimizer == "sgd"].sort_values(["hidden_dim", "seed"])
    manual = checked[checked.optimizer == "manual"].sort_values(["hidden_dim", "seed"])
    curves = zip(sgd.reference_loss_curve, manual.reference_loss_curve, strict=True)
    expected = max(np.abs(np.subtract(a, b, dtype=np.float64)).max() for a, b in curves)
    assert pair["n_pairs"] == 9 and pair["max_abs_diff"] == pytest.approx(expected, abs=0)
    assert check["pairs"]["manual-no-zero-grad"]["max_abs_diff"] > 1e-3  # accumulation
    assert answers.warnings == []
    # the notebook's literal line rounds twice: measured and reported as rounding, not as equal
    assert 0 < pair["max_abs_diff"] <= REFERENCE_TOLERANCE
    assert pair["n_identical"] < pair["n_pairs"]
    assert "equal to torch.optim.SGD up to float32 rounding: largest difference" in (
        answers.question1
    )
    assert "bit for bit" not in answers.question1


def _checked(table: pa.Table, optimizer: str) -> np.ndarray:
    return np.asarray(table.column("reference_checked").to_pylist(), bool) & (
        np.asarray(table.column("optimizer").to_pylist()) == optimizer
    )


def _perturb_checked_curves(table: pa.Table, optimizer: str, by: float) -> pa.Table:
    """Add `by` to epoch 10 of the batched curves of the checked `optimizer` rows."""
    curves = [np.array(c, np.float32) for c in table.column("loss_curve").to_pylist()]
    for i in np.flatnonzero(_checked(table, optimizer)):
        curves[i][9] += np.float32(by)
    index = table.schema.get_field_index("loss_curve")
    return table.set_column(
        index, table.schema.field(index), pa.array(curves, pa.list_(pa.float32()))
    )


def _copy(folder, tmp_path: Path) -> Path:
    run = tmp_path / "results" / Path(folder[1][MAIN]).name
    shutil.copytree(folder[1][MAIN], run)
    return run


def test_a_perturbed_engine_is_flagged(folder, tmp_path):
    """Batched sgd curves off the notebook's by 1e-4 (10x the tolerance), or a stored
    reference difference of 1e-3 for manual: the report flags each rule, visibly, first."""
    run = _copy(folder, tmp_path)
    rewrite(run, lambda t: _perturb_checked_curves(t, "sgd", 1e-4))

    def stored(table: pa.Table) -> pa.Table:
        is_manual = np.asarray(table.column("optimizer").to_pylist()) == "manual"
        old = np.asarray(table.column("reference_max_abs_diff").to_pylist(), dtype=float)
        new = np.where(is_manual & np.isfinite(old), 1e-3, old)
        index = table.schema.get_field_index("reference_max_abs_diff")
        return table.set_column(index, table.schema.field(index), pa.array(new, mask=np.isnan(new)))

    rewrite(run, stored)
    built = report.report_of(str(run), out_dir=str(tmp_path / "out"))
    rules = _check(built.answers)["rules"]
    assert rules["sgd"]["flagged"] and rules["manual"]["flagged"]
    assert rules["sgd"]["max_abs_diff"] == pytest.approx(1e-4, rel=0.1)
    assert not rules["manual-no-zero-grad"]["flagged"]
    assert any(
        w.startswith("WARNING: the engine's sgd curves differ") for w in built.answers.warnings
    )
    assert built.text.startswith("WARNING: the engine's")
    assert "WARNING: the engine's manual curves differ" in built.text
    assert built.markdown.index("WARNING") < built.markdown.index("## 1.")


def _scale_checked_curves(table: pa.Table, optimizer: str, factor: float) -> pa.Table:
    """Both curves (engine and notebook) of the checked `optimizer` rows times `factor`."""
    hit = _checked(table, optimizer)
    for column in ("loss_curve", "reference_loss_curve"):
        curves = table.column(column).to_pylist()
        for i in np.flatnonzero(hit):
            curves[i] = (np.array(curves[i], np.float32) * np.float32(factor)).tolist()
        index = table.schema.get_field_index(column)
        field = table.schema.field(index)
        table = table.set_column(index, field, pa.array(curves, field.type))
    return table


def test_float32_rounding_of_large_losses_is_no_engine_alarm(folder, tmp_path):
    """Losses in the hundreds round in float32 at ~1e-4: relative to the loss that is ~1e-7,
    no alarm; the models of a blown-up run (diverged) are left out of the alarm, said so."""
    run = _copy(folder, tmp_path)
    rewrite(run, lambda t: _scale_checked_curves(t, "sgd", 1000.0))
    answers = word_answers(answer_numbers(scan(str(run), 100)), plain)
    sgd = _check(answers)["rules"]["sgd"]
    assert not sgd["flagged"] and not answers.warnings and "WARNING" not in answers.question1
    assert sgd["max_abs_diff"] > 1e-5 and sgd["max_rel_diff"] < 1e-5
    blown = word_answers(answer_numbers(scan(folder[1][BLOWN], 100)), plain)
    sgd = _check(blown)["rules"]["sgd"]
    assert sgd["n_checked"] > 0 and sgd["n_left_out"] == sgd["n_checked"]
    assert not sgd["flagged"] and not blown.warnings
    assert f"{sgd['n_left_out']} diverged and left out of the tolerance" in blown.question1
