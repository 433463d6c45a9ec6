"""The report's comparison with the last run like it, and `--compare` of any two run folders."""

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from irismodel import report
from irismodel.parameters import SweepConfig
from irismodel.report.comparison import compare_folders
from irismodel.store.layout import MANIFEST
from irismodel.sweep import run_sweep

SAME = dict(seeds="0..2", hidden_dims=[8], optimizers=["sgd"], epochs=8, device="cpu")


def _run(root: Path, name: str, day: int, **changes) -> str:
    config = SweepConfig(**{**SAME, **changes}, output_dir=str(root))
    return run_sweep(config, name, datetime(2026, 1, day, tzinfo=UTC))


def _nudge_one_loss(folder: str) -> float:
    """Rewrite one part file with one loss one float32 step up; return the step."""
    part = sorted(Path(folder).glob("*.parquet"))[0]
    table = pq.read_table(part)
    curves = table.column("loss_curve").to_pylist()
    before = np.float32(curves[1][4])
    curves[1][4] = float(np.nextafter(before, np.float32(np.inf)))
    index = table.schema.get_field_index("loss_curve")
    field = table.schema.field(index)
    table = table.set_column(index, field, pa.array(curves, field.type))
    pq.write_table(table.replace_schema_metadata(table.schema.metadata), part)
    return float(np.float64(curves[1][4]) - np.float64(before))


@pytest.fixture(scope="module")
def perturbed(tmp_path_factory) -> tuple[str, str, float]:
    """A run whose stored rows were nudged after publication, then a rerun of it."""
    root = tmp_path_factory.mktemp("perturbed")
    first = _run(root, "run-1", 1)
    step = _nudge_one_loss(first)
    return first, _run(root, "run-2", 2), step


def test_perturbed_previous_run_is_a_warning_in_the_manifest(perturbed):
    """Same environment and data, one loss nudged: the manifest's verdict is a WARNING, sized."""
    first, second, step = perturbed
    compared = json.loads((Path(second) / MANIFEST).read_text())["comparison"]
    assert compared["previous_run"] == Path(first).name
    assert compared["verdict"] == "WARNING", compared
    assert compared["loss_difference"] == step > 0
    assert compared["changed_rows"] == 1 and compared["environment"] == {}


def test_a_warning_leads_the_report_text_and_markdown(perturbed, tmp_path):
    """The report of the rerun opens with the WARNING, and has the comparison section."""
    first, second, step = perturbed
    built = report.report_of(second, out_dir=str(tmp_path))
    lines = built.text.splitlines()
    assert lines[0].startswith(f"WARNING: unlike the last run like it ({Path(first).name}): ")
    assert "1 of 6 models differ" in lines[0]
    assert built.text.index("Headline:") > 0
    section = built.text.split("Compared with the last run like it:\n", 1)[1]
    assert f"largest absolute difference {step:.3g}" in section
    markdown = built.markdown.splitlines()
    assert markdown[2].startswith("> **WARNING: unlike the last run like it")
    assert "## Compared with the last run like it" in markdown
    assert markdown.index("## Compared with the last run like it") > markdown.index("## Headline")


def test_an_identical_rerun_reports_its_section_without_warning(perturbed, tmp_path):
    """A third run like the second: identical, so the section says so and nothing warns."""
    _, second, _ = perturbed
    third = _run(Path(second).parent, "run-3", 3)
    built = report.report_of(third, out_dir=str(tmp_path))
    assert "WARNING" not in built.text and "WARNING" not in built.markdown
    section = built.text.split("Compared with the last run like it:\n", 1)[1].splitlines()
    assert section[:2] == [
        f"  previous run: {Path(second).name}",
        "  verdict: identical: all 6 models bit-identical",
    ]


def test_compare_exit_codes_and_text(perturbed, capsys):
    """`--compare` prints the comparison: exit 0 for identical, 1 for a WARNING."""
    first, second, _ = perturbed
    assert report.main(["--compare", second, second]) == 0
    assert "identical: all 6 models bit-identical" in capsys.readouterr().out
    assert report.main(["--compare", first, second]) == 1
    out = capsys.readouterr().out
    assert out.startswith("Run run-2 compared with run-1: WARNING: same environment and data")
    assert "  loss curves: largest absolute difference" in out


@pytest.mark.parametrize(
    "run_a, run_b, match",
    [
        ("{root}", "{second}", r"--compare: RUN_A is not a run folder: .*_run\.json"),
        ("{second}", "{root}/nope", r"--compare: RUN_B .*nope' is no folder"),
    ],
)
def test_compare_refuses_what_is_not_a_run_folder(perturbed, capsys, run_a, run_b, match):
    """A location or a missing folder given as a run: refused naming --compare; exit 2."""
    _, second, _ = perturbed
    names = dict(root=str(Path(second).parent), second=second)
    run_a, run_b = run_a.format(**names), run_b.format(**names)
    with pytest.raises(report.ReportError, match=match):
        compare_folders(run_a, run_b)
    assert report.main(["--compare", run_a, run_b]) == 2
    assert "iris-sweep-report: error: --compare: RUN_" in capsys.readouterr().err


def test_compare_with_a_location_or_neither_exits_2(perturbed, capsys):
    """--compare with a RESULTS_LOCATION, or no location at all: exit 2 naming the parameter."""
    _, second, _ = perturbed
    assert report.main([second, "--compare", second, second]) == 2
    assert "--compare: give two run folders and nothing else" in capsys.readouterr().err
    assert report.main([]) == 2
    assert "RESULTS_LOCATION: required (or --compare RUN_A RUN_B)" in capsys.readouterr().err


def test_a_first_run_has_no_comparison_section(perturbed, tmp_path):
    """A run with no earlier run like it: its report has no comparison section."""
    root = Path(perturbed[0]).parent
    first = _run(root, "run-alone", 4, seeds="0..1")
    built = report.report_of(first, out_dir=str(tmp_path))
    assert "Compared with" not in built.text and "Compared with" not in built.markdown
    assert (
        "Compared with the last run like it"
        in report.report_of(perturbed[1], out_dir=str(tmp_path)).text
    )


def test_the_answers_each_report_wrote_show_side_by_side(tmp_path, capsys):
    """Two runs alike with their reports: `--compare` and the comparison artifact show both
    runs' key numbers, which match; a run without a report shows none."""
    from irismodel.report.build import written_answers
    from irismodel.report.comparison import comparison_markdown, manifest_comparisons

    a, b = (_run(tmp_path, name, day, hidden_dims=[8, 9]) for name, day in (("a", 1), ("b", 2)))
    assert written_answers(a) is None
    numbers = [report.report_of(f, prefix=report.report_prefix(f)).key_numbers for f in (a, b)]
    assert numbers[0] == numbers[1] == written_answers(b)
    assert report.main(["--compare", a, b]) == 0
    answers = next(line for line in capsys.readouterr().out.splitlines() if "answers:" in line)
    slope = numbers[0]["sgd slope"]
    assert f"sgd slope {slope:.6g} -> {slope:.6g}" in answers
    markdown = comparison_markdown(manifest_comparisons(b), (numbers[0], numbers[1]))
    assert "## The answers, the last run like it -> this one" in markdown
    assert f"- sgd slope: {slope:.6g} -> {slope:.6g}" in markdown
    assert "## The answers" not in comparison_markdown(manifest_comparisons(b))
