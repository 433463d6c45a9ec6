"""The README's reader snippets (pandas, pyarrow, DuckDB, polars) run on a real results folder."""

import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from irismodel import report, store
from irismodel.data import load_dataset, split_dataset
from irismodel.parameters import SweepConfig
from irismodel.store import layout, open_run, plan_shards
from irismodel.sweep import context_of, run_shard, run_sweep

ROOT = Path(__file__).resolve().parents[2]

READERS = ("duckdb", "pandas", "polars", "pyarrow")


def _reader_blocks() -> dict[str, list[str]]:
    """The README's ```python blocks that open by importing a reader, by that reader."""
    text = (ROOT / "README.md").read_text()
    blocks: dict[str, list[str]] = {}
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL):
        words = block.split("\n", 1)[0].split()
        if "load_model" in block:
            continue  # the model loader's snippet, run by its own test
        if len(words) > 1 and words[0] == "import" and words[1].split(".")[0] in READERS:
            blocks.setdefault(words[1].split(".")[0], []).append(block)
    return blocks


def snippets() -> dict[str, str]:
    """Return the README's reader snippets, each run from the folder that holds `results/`."""
    return {name: found[0] for name, found in _reader_blocks().items()}


def _run(folder: Path, run_id: str, minute: int, optimizers: list[str]) -> str:
    """Write one real run with the flow's library path, in shards of two seeds."""
    config = SweepConfig(
        output_dir=str(folder), device="cpu", hidden_dims=[8, 9], optimizers=optimizers,
        split_seeds="0", seeds=[0, 1, 2], epochs=120, shard_size=2,
    )  # fmt: skip
    return run_sweep(config, run_id, datetime(2026, 1, 2, 3, minute, tzinfo=UTC))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """`<tmp>/results`: two runs, an unfinished run, a half-written part, report files."""
    workdir = tmp_path_factory.mktemp("readers")
    folder = workdir / "results"
    _run(folder, "run-a", 0, ["sgd", "manual"])
    _run(folder, "run-b", 1, ["sgd"])
    # an unfinished run: its shards wait in staging, never seen by a reader
    config = SweepConfig(output_dir=str(folder), device="cpu", hidden_dims=[8],
                         split_seeds="0", seeds=[0], epochs=120)  # fmt: skip
    opened = open_run(config, "run-c", datetime(2026, 1, 2, 3, 2, tzinfo=UTC))
    split = split_dataset(load_dataset())
    for shard in plan_shards(config):
        run_shard(split, shard, context_of(opened, config))
    # what a crashed writer leaves: the writer's hidden temporary name
    published = next(folder.glob("iris-sweep-*-run-a"))
    (published / f".h8-sgd-0009.parquet.{uuid.uuid4().hex}.tmp").write_bytes(b"PAR1 unfinished")
    report.report_of(str(folder))
    assert list((folder / layout.STAGING).glob("*/*.parquet")), "the fixture's unfinished run"
    assert list(folder.glob("_*.png")), "the fixture should hold the report's plots"
    return workdir


@pytest.fixture(scope="module")
def expected_rows(workdir) -> int:
    rows = len(store.read_results(str(workdir / "results")))
    assert rows == 2 * 2 * 3 + 2 * 1 * 3
    return rows


def _execute(name: str, workdir: Path) -> dict:
    namespace: dict = {}
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        exec(compile(snippets()[name], f"README snippet {name}", "exec"), namespace)
    finally:
        os.chdir(cwd)
    return namespace


def test_there_is_one_snippet_per_reader():
    """The README shows exactly one snippet each for pandas, pyarrow, DuckDB and polars."""
    assert {name: len(found) for name, found in _reader_blocks().items()} == dict.fromkeys(
        READERS, 1
    )


def test_pandas_snippet_reads_every_row(workdir, expected_rows):
    """`pd.read_parquet(folder)` reads every run's rows and skips the hidden and report files."""
    frame = _execute("pandas", workdir)["frame"]
    assert len(frame) == expected_rows
    assert (frame["loss_at_100"] == frame["loss_curve"].map(lambda c: c[99])).all()


def test_pyarrow_snippet_reads_every_row(workdir, expected_rows):
    """`pyarrow.dataset.dataset(folder)` reads every run's rows and skips the other files."""
    table = _execute("pyarrow", workdir)["table"]
    assert table.num_rows == expected_rows
    assert set(table.column("flow_run_id").to_pylist()) == {"run-a", "run-b"}


def test_duckdb_snippet_reads_every_row(workdir, expected_rows):
    """DuckDB's `read_parquet('results/iris-sweep-*/*.parquet')` sees every published model."""
    per_configuration = _execute("duckdb", workdir)["per_configuration"]
    assert per_configuration["models"].sum() == expected_rows
    assert len(per_configuration) == 2 * 2  # (8, 9) x (sgd, manual)
    frame = store.read_results(str(workdir / "results"))
    frame = frame[(frame.hidden_dim == 8) & (frame.optimizer == "manual")]
    row = per_configuration.query("hidden_dim == 8 and optimizer == 'manual'").iloc[0]
    assert row.loss_at_100 == pytest.approx(frame["loss_curve"].map(lambda c: c[99]).mean())


def test_polars_snippet_reads_every_row(workdir, expected_rows):
    """polars' `pl.read_parquet('results/iris-sweep-*/*.parquet')` reads every published row."""
    frame = _execute("polars", workdir)["frame"]
    assert frame.height == expected_rows
    assert frame["loss_at_100"].to_list() == [curve[99] for curve in frame["loss_curve"]]


def test_the_readme_lists_every_parameter_as_declared():
    """The README's parameter table is `SweepConfig`'s declaration: names, defaults, meanings."""
    import json

    from irismodel.parameters import run_form

    text = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| `(.*?)` \| (.*) \|$", text, flags=re.MULTILINE)
    declared = run_form()
    table = {name: (default, meaning) for name, default, meaning in rows if name in declared}
    assert list(table) == list(declared)
    for name, form in declared.items():
        default, meaning = table[name]
        assert json.loads(default) == form["default"], name
        assert meaning == form["description"], name


def test_the_load_model_snippet_loads_the_best_model_of_a_run(tmp_path):
    """The README's DuckDB query picks the run's non-diverged row of least test log loss, and
    `load_model` returns the net holding that row's weights."""
    workdir = tmp_path
    _run(workdir / "results", "run-a", 0, ["sgd", "adam"])
    _run(workdir / "results", "run-b", 1, ["sgd"])
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(),
                                      flags=re.DOTALL) if "load_model(best)" in b]  # fmt: skip
    namespace: dict = {}
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        exec(compile(block.replace("<run id>", "run-a"), "README load_model", "exec"), namespace)
    finally:
        os.chdir(cwd)
    frame = store.read_results(str(workdir / "results"), flow_run_ids=["run-a"])
    frame = frame[~frame.diverged]
    best, net = namespace["best"], namespace["net"]
    assert best.test_log_loss == frame.test_log_loss.min()
    (row,) = [r for _, r in frame.iterrows() if (r.seed, r.hidden_dim, r.optimizer, r.split_seed)
              == (best.seed, best.hidden_dim, best.optimizer, best.split_seed)]  # fmt: skip
    assert net.fc1.weight.flatten().tolist() == list(row.fc1_weight)
    assert net.fc2.bias.item() == row.fc2_bias
    assert 0 <= namespace["p_versicolor"].item() <= 1
