"""The README's reader snippets (pandas, pyarrow, DuckDB, polars) run on a real results folder."""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from irismodel import report, results
from irismodel.config import validate_config
from irismodel.data import load_dataset, split_dataset
from irismodel.sweep import RunContext, evaluate_configuration, train_configuration

ROOT = Path(__file__).resolve().parents[2]

# The README's text, verbatim (also in /tmp/fragments/readers.md when this was written): each
# ```python block runs from the folder that holds `results/`.
README_SNIPPETS = '''\
Every run adds one Parquet file to the results folder; read them all together with any Parquet
reader. Names starting with `.` or `_` (files being written, the training cache, the report's
plots) are not results: the folder readers below skip them, and the globs match only
`*.parquet`. The loss of epoch `e` is `loss_curve[e - 1]`.

pandas:

```python
import pandas as pd

frame = pd.read_parquet("results")  # one row per model, every run
frame["loss_at_100"] = frame["loss_curve"].map(lambda curve: curve[99])
```

pyarrow:

```python
import pyarrow.dataset as ds

table = ds.dataset("results", format="parquet").to_table(
    columns=["flow_run_id", "hidden_dim", "optimizer", "seed", "test_accuracy"]
)
```

DuckDB:

```python
import duckdb

per_configuration = duckdb.sql("""
    SELECT hidden_dim, optimizer, count(*) AS models, avg(test_accuracy) AS test_accuracy,
           avg(loss_curve[100]) AS loss_at_100  -- DuckDB lists are 1-based: epoch 100
    FROM read_parquet('results/*.parquet')
    WHERE NOT diverged
    GROUP BY ALL
    ORDER BY ALL
""").df()
```

polars:

```python
import polars as pl

frame = pl.read_parquet("results/*.parquet").with_columns(
    pl.col("loss_curve").list.get(99).alias("loss_at_100")
)
```
'''


def snippets() -> dict[str, str]:
    """Return the README's code blocks by the reader they use."""
    blocks = re.findall(r"```python\n(.*?)```", README_SNIPPETS, flags=re.DOTALL)
    return {block.split("\n", 1)[0].split()[1].split(".")[0]: block for block in blocks}


def _run(folder: Path, run_id: str, minute: int, optimizers: list[str]) -> None:
    """Write one real run with the flow's library path, caching into `folder/.cache`."""
    config = validate_config(
        output_dir=str(folder), device="cpu", hidden_dims=[8, 9], optimizers=optimizers,
        seeds=[0, 1, 2], epochs=120,
    )  # fmt: skip
    split = split_dataset(load_dataset())
    started = datetime(2026, 1, 2, 3, minute, tzinfo=UTC)
    context = RunContext(run_id, started, config)
    rows = []
    for hidden_dim in config.hidden_dims:
        for optimizer in config.optimizers:
            rows += evaluate_configuration(
                train_configuration(split, hidden_dim, optimizer, config), split, context
            )
    table = results.to_table(rows, config.parameters())
    results.write_results(table, str(folder), results.file_name(run_id, started))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """`<tmp>/results`: two runs, a half-written temporary file, the cache, and report files."""
    workdir = tmp_path_factory.mktemp("readers")
    folder = workdir / "results"
    _run(folder, "run-a", 0, ["sgd", "manual"])
    _run(folder, "run-b", 1, ["sgd"])
    # what a crashed writer leaves: storage.write_atomically's hidden temporary name
    final = results.file_name("run-c", datetime(2026, 1, 2, 3, 2, tzinfo=UTC))
    (folder / f".{final}.{uuid.uuid4().hex}.tmp").write_bytes(b"PAR1 not a finished file")
    report.write_report(str(folder))
    assert list((folder / ".cache").glob("*.json")), "the fixture should hold the cache"
    assert list(folder.glob("_*.png")), "the fixture should hold the report's plots"
    return workdir


@pytest.fixture(scope="module")
def expected_rows(workdir) -> int:
    rows = len(results.read_results(str(workdir / "results")))
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
    assert sorted(snippets()) == ["duckdb", "pandas", "polars", "pyarrow"]


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
    """DuckDB's `read_parquet('results/*.parquet')` sees every model, epoch 100 1-based."""
    per_configuration = _execute("duckdb", workdir)["per_configuration"]
    assert per_configuration["models"].sum() == expected_rows
    assert len(per_configuration) == 2 * 2  # (8, 9) x (sgd, manual)
    frame = results.read_results(str(workdir / "results"))
    frame = frame[(frame.hidden_dim == 8) & (frame.optimizer == "manual")]
    row = per_configuration.query("hidden_dim == 8 and optimizer == 'manual'").iloc[0]
    assert row.loss_at_100 == pytest.approx(frame["loss_curve"].map(lambda c: c[99]).mean())


def test_polars_snippet_reads_every_row(workdir, expected_rows):
    """polars' `pl.read_parquet('results/*.parquet')` reads every run's rows."""
    frame = _execute("polars", workdir)["frame"]
    assert frame.height == expected_rows
    assert frame["loss_at_100"].to_list() == [curve[99] for curve in frame["loss_curve"]]


def test_readme_shows_these_snippets():
    """Once the README has its reading section, it holds every snippet exactly as tested here."""
    readme = ROOT / "README.md"
    if not readme.is_file() or "pd.read_parquet" not in readme.read_text():
        pytest.skip("README.md has no reading section yet")
    text = readme.read_text()
    for name, block in snippets().items():
        assert block in text, f"the README's {name} snippet differs from the tested one"
