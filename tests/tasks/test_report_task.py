"""publish_report and the progress helpers leave the expected artifacts on the flow run."""

import asyncio
import json
from pathlib import Path

import pytest

from irismodel import read_results
from irismodel.parameters import SweepConfig
from irismodel.report import written_text
from irismodel.sweep import run_sweep


def _write_run(output_dir: str, flow_run_id: str) -> str:
    """Write a tiny real run's results, as the flow would, under this flow run's id."""
    config = SweepConfig(
        output_dir=output_dir, device="cpu", hidden_dims=[8, 9], optimizers=["sgd", "manual"],
        split_seeds="0", seeds=[0, 1, 2], epochs=60,
    )  # fmt: skip
    return run_sweep(config, flow_run_id)


def _tiny_flow():
    from prefect import flow
    from prefect.runtime import flow_run

    from tasks.report import Progress, publish_report

    @flow(name="report-under-test")
    def report_under_test(output_dir: str) -> tuple[str, str, str]:
        flow_run_id = flow_run.get_id()
        progress = Progress(4)
        for _ in range(4):
            progress.advance()
        path = _write_run(output_dir, flow_run_id)
        return flow_run_id, path, publish_report(path, flow_run_id)

    return report_under_test


async def _artifacts(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )


@pytest.fixture(scope="module")
def two_runs(prefect_harness, tmp_path_factory):
    """The tiny flow run twice into one folder: two runs, two sets of artifacts."""
    folder = str(tmp_path_factory.mktemp("results"))
    report_under_test = _tiny_flow()
    return folder, [report_under_test(folder), report_under_test(folder)]


@pytest.mark.server
def test_each_run_gets_one_artifact_of_each_kind_under_a_stable_key(two_runs):
    """Table, markdown, link and progress artifacts exist once per run under fixed keys."""
    _, runs = two_runs
    run_ids = {flow_run_id for flow_run_id, _, _ in runs}
    for key, kind in (
        ("iris-sweep-summary", "table"),
        ("iris-sweep-report", "markdown"),
        ("iris-sweep-results", "markdown"),  # Prefect stores a link artifact as markdown
        ("iris-sweep-progress", "progress"),
        ("iris-sweep-comparison", "markdown"),
        ("iris-sweep-history", "markdown"),
    ):
        # other tests' flow runs share the server and the keys: look at these runs' only
        artifacts = [a for a in asyncio.run(_artifacts(key)) if str(a.flow_run_id) in run_ids]
        assert sorted(str(a.flow_run_id) for a in artifacts) == sorted(run_ids), key
        assert all(a.type == kind for a in artifacts), key


@pytest.mark.server
def test_artifacts_hold_the_report(two_runs):
    """The markdown embeds the three plots and leads with the answers; the table has a row per
    configuration (sgd and manual, one code path, as one) and its numbers as numbers."""
    _, runs = two_runs
    flow_run_id, path, numbers = runs[-1]
    mine = {
        key: next(a for a in asyncio.run(_artifacts(key)) if str(a.flow_run_id) == flow_run_id)
        for key in ("iris-sweep-summary", "iris-sweep-report", "iris-sweep-results")
    }
    markdown = mine["iris-sweep-report"].data
    assert markdown.count("data:image/png;base64,") == 3
    assert markdown.index("## 1.") < markdown.index("## Summary per configuration")
    assert markdown.index("## 2.") < markdown.index("## Beyond the notebook's question")
    assert "identical by construction" in markdown and "blocked by (split, seed)" in markdown
    table = mine["iris-sweep-summary"].data
    table = json.loads(table) if isinstance(table, str) else table
    assert len(table) == 2 and {row["optimizer"] for row in table} == {"sgd = manual"}
    for row in table:  # one number per column, so the UI sorts them; missing ones are null
        assert isinstance(row["test acc mean"], float) and isinstance(row["seeds"], int)
        assert 0 <= row["test acc low"] <= row["test acc mean"] <= row["test acc high"] <= 1
    where = mine["iris-sweep-results"].data  # a local folder: copyable text, no file:// link
    assert path.replace("_", "\\_") in where and "file://" not in where
    assert "2. Does the loss at epoch 100 fall" in written_text(path)
    # the key numbers it returns are the report's: the slope of sgd's loss, its interval, p
    rows = read_results(path)  # manual's rows repeat sgd's: the answers count them once
    assert numbers["models"] == (rows["optimizer"] == "sgd").sum() and numbers["epoch"] == 100
    assert numbers["sgd slope low"] <= numbers["sgd slope"] <= numbers["sgd slope high"]
    assert 0 <= numbers["sgd p"] <= 1 and 0 <= numbers["sgd accuracy"] <= 1


def _mine(key: str, flow_run_id: str) -> str:
    return next(a for a in asyncio.run(_artifacts(key)) if str(a.flow_run_id) == flow_run_id).data


@pytest.mark.server
def test_the_comparison_artifact_names_the_previous_run_and_its_verdict(two_runs):
    """The second run is compared with the first: same code, same data, bit-identical rows."""
    _, ((first_id, first, _), (second_id, _, _)) = two_runs
    assert _mine("iris-sweep-comparison", first_id).startswith("No earlier published run")
    compared = _mine("iris-sweep-comparison", second_id)
    assert f"previous run: {Path(first).name}".replace("_", "\\_") in compared
    assert "verdict: identical: all 12 models bit-identical" in compared
    assert "WARNING" not in compared
    # the answers of both runs, side by side: the same numbers
    slope = next(line for line in compared.splitlines() if line.startswith("- sgd slope:"))
    assert slope.split(": ")[1].split(" -> ")[0] == slope.split(" -> ")[1]


@pytest.mark.server
def test_the_history_artifact_lists_both_runs_newest_first_with_their_answers(two_runs):
    """One line per run of these parameters, the newest first, with the answers' numbers."""
    _, ((first_id, _, numbers), (second_id, _, _)) = two_runs
    table = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in _mine("iris-sweep-history", second_id).splitlines()
    ]
    assert [row[1] for row in table[2:]] == [second_id[:8], first_id[:8]]
    slope = table[0].index("sgd slope")
    estimate = float(table[3][slope].split(" [")[0])
    assert estimate == pytest.approx(numbers["sgd slope"], rel=1e-3)


@pytest.mark.server
def test_progress_ends_at_100_percent(two_runs):
    """The progress artifact advanced to 100 once every configuration was done."""
    _, runs = two_runs
    run_ids = {flow_run_id for flow_run_id, _, _ in runs}
    artifacts = [
        a for a in asyncio.run(_artifacts("iris-sweep-progress")) if str(a.flow_run_id) in run_ids
    ]
    assert len(artifacts) == 2 and all(float(a.data) == 100.0 for a in artifacts)


@pytest.mark.server
def test_plots_are_written_beside_each_results_file(two_runs):
    """Each run's PNGs sit in its run folder, named after it, never overwritten."""
    folder, runs = two_runs
    for _, path, _ in runs:
        stem = Path(path).name
        for suffix in ("-loss-curves.png", "-accuracy.png", "-slope-by-epoch.png", ".md"):
            assert (Path(path) / f"_{stem}{suffix}").is_file()
    assert len(list(Path(folder).glob("*/_*-loss-curves.png"))) == 2


def test_a_location_with_a_fence_and_newlines_stays_text_in_the_results_artifact():
    """An output_dir holding ``` and newlines renders as one escaped paragraph, never code."""
    from markdown_it import MarkdownIt

    from tasks.report import results_markdown

    location = "/data/x```\n# Heading\n```\n<b>bold</b> [link](http://e.x) | a_b"
    html = MarkdownIt().render(results_markdown("0b9e", location))
    assert "<h1>" not in html and "<b>" not in html and "<a " not in html
    assert html.count("<code>") == 2  # the two reader calls, nothing of the location
    shown = html.split("<p>")[2].split("</p>")[0]  # the location's paragraph
    assert (
        shown == "/data/x```\\n# Heading\\n```\\n&lt;b&gt;bold&lt;/b&gt; [link](http://e.x) | a_b"
    )
