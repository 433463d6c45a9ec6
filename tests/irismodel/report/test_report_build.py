"""A report from a location or a frame: its files, its documents, and the command line."""

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from report_runs import MAIN, NOT_HELD_OUT, png_size, rows_of

from irismodel import report, store

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SECONDARY = "Beyond the notebook's question (pre-specified secondary summary)"


def test_markdown_leads_with_the_answers_and_embeds_the_plots(main_report):
    """The markdown opens with the headline and the two answers, then the secondary summary,
    the table and the three PNGs as data URIs; the files are those it names."""
    markdown = main_report.markdown
    assert markdown.count("data:image/png;base64,") == 3
    for chunk in markdown.split("data:image/png;base64,")[1:]:
        png_size(base64.b64decode(chunk.split(")", 1)[0]))
    headings = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Headline",
        "## 1. Is the model good, and does the hand-written update match torch.optim.SGD?",
        "## 2. Does the loss at epoch 100 fall as hidden_dim grows?",
        f"## {SECONDARY}",
        "## Summary per configuration",
    ]
    assert "| hidden_dim | optimizer | models: conv/stall/osc/div |" in markdown
    assert "95% interval over 6 seeds, one data split" in markdown
    assert len(markdown) < 400_000
    paths = main_report.paths
    assert set(paths) == {"loss_curves", "accuracy", "slope_by_epoch", "markdown", "text",
                          "answers"}  # fmt: skip
    assert Path(paths["markdown"]).read_text() == markdown
    assert json.loads(Path(paths["answers"]).read_text()) == main_report.key_numbers
    sgd = main_report.answers.numbers["settings"][0]["question2"][0]
    assert main_report.key_numbers["sgd slope"] == sgd["slope"]["mean"]
    assert main_report.key_numbers["sgd p"] == sgd["p_value"]
    assert paths["slope_by_epoch"].endswith("-slope-by-epoch.png")
    png_size(Path(paths["slope_by_epoch"]).read_bytes())


def test_the_terminal_text_is_written_beside_the_run_and_read_back(folder, main_report):
    """The terminal text leads with the headline, then the table, both answers and the
    secondary summary; it is written beside the run's Parquet, named after the run."""
    text = main_report.text
    assert text.startswith("Headline:\nQ1 sgd = manual: test accuracy median")
    assert text.index("hidden_dim") < text.index("1. Is the model good")
    assert text.index("2. Does the loss at epoch 100 fall") < text.index(SECONDARY)
    run = folder[1][MAIN]
    assert Path(main_report.paths["text"]).parent == Path(run)
    assert report.written_text(run) == text
    assert len(store.read_results(run)) == 54  # the folder readers skip the report's files


def test_warnings_come_first_in_the_terminal_text(frame):
    """A warning leads the terminal text, as it leads the markdown."""
    warned = report.Answers("q1", "q2", warnings=["WARNING: something"])
    text = report.format_terminal(warned, report.summarize(rows_of(frame, MAIN)))
    assert text.startswith("WARNING: something\n")


def test_report_files_replace_a_planted_link_never_write_through_it(frame, tmp_path):
    """Every report file goes through the atomic writer: a symbolic link at its name is
    replaced by the file, and the link's target is untouched."""
    target = tmp_path / "target.txt"
    target.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    paths = report.report_files(str(out), "_r")
    for path in paths.values():
        os.symlink(target, path)
    report.report_of(rows_of(frame, NOT_HELD_OUT), str(out), prefix="_r")
    assert target.read_text() == "keep me"
    for path in paths.values():
        assert not os.path.islink(path) and os.path.getsize(path) > 0


def test_a_frame_needs_an_out_dir(frame):
    """A report of a DataFrame has no folder of its own: out_dir is required, said so."""
    with pytest.raises(report.ReportError, match="out_dir: required when the report is built"):
        report.report_of(frame)


def test_a_report_of_chosen_runs_reports_only_those(folder):
    """report_of with run ids reports only those runs, with no column for settings that do not
    vary among them."""
    location, _, _ = folder
    paths = report.report_of(str(location), str(location / "filtered"), [NOT_HELD_OUT]).paths
    text = Path(paths["text"]).read_text()
    header = text.split("\n\n")[1].splitlines()[0]  # the table's, after the headline
    assert header.split()[:2] == ["hidden_dim", "optimizer"] and "learning_rate" not in header
    assert "manual-no-zero-grad" in text and "NOT held out" in text and "Held-out" not in text


@pytest.mark.subprocess
def test_module_command_prints_the_answers(folder, tmp_path):
    """`python -m irismodel.report FOLDER` exits 0, prints both answers, writes the plots."""
    location, _, _ = folder
    done = subprocess.run(
        [sys.executable, "-m", "irismodel.report", str(location), "--run", MAIN, "--epoch", "100",
         "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "1. Is the model good" in done.stdout and "2. Does the loss at epoch 100" in done.stdout
    assert "sgd = manual" in done.stdout and "Page's L" in done.stdout
    assert f"loss curves: {tmp_path / '_iris-sweep-report-loss-curves.png'}" in done.stdout
    assert (tmp_path / "_iris-sweep-report-loss-curves.png").is_file()


def test_module_command_refuses_an_unknown_run(folder, capsys):
    """An unknown run id exits 2 with a message naming it."""
    location, _, _ = folder
    assert report.main([str(location), "--run", "no-such-run"]) == 2
    assert "no results rows of run(s) no-such-run" in capsys.readouterr().err
