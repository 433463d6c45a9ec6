"""A location's runs over time: the previous run like a given one, and the history table."""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
import pyarrow.dataset as ds

from irismodel.compare import comparable_parameters
from irismodel.report.text import markdown_text
from irismodel.store import list_result_files
from irismodel.store.compared import published_manifests
from irismodel.store.locations import resolve, split
from irismodel.store.schema import SCHEMA

HISTORY_RUNS = 20  # runs a history table shows at most, the newest
SHOWN_ELSEWHERE = ("epoch", "models")  # answers' numbers the table has a column for already


def comparable_runs(
    candidates: Sequence[tuple[Mapping[str, Any], str]],
    manifest: Mapping[str, Any],
    same_data: bool = False,
) -> list[tuple[Mapping[str, Any], str]]:
    """Return earlier complete runs of `manifest`'s parameters (`same_data`: data), newest first."""
    wanted = comparable_parameters(manifest.get("parameters") or {})
    started = str(manifest.get("started_at") or "~")
    fingerprint = manifest.get("data_fingerprint")
    found = [
        (record, folder)
        for record, folder in candidates
        if record.get("status") == "complete"
        and record.get("run_id") != manifest.get("run_id")
        and str(record.get("started_at") or "") <= started  # ISO times in UTC sort as text
        and comparable_parameters(record.get("parameters") or {}) == wanted
        and (not same_data or record.get("data_fingerprint") == fingerprint)
    ]
    found.sort(key=lambda pair: (str(pair[0].get("started_at") or ""), pair[1]), reverse=True)
    return found


def previous_run(
    candidates: Sequence[tuple[Mapping[str, Any], str]],
    manifest: Mapping[str, Any],
    same_data: bool = False,
) -> str | None:
    """Return the folder of the latest earlier complete run comparable to `manifest`, or None."""
    return next((folder for _, folder in comparable_runs(candidates, manifest, same_data)), None)


def run_history(run_folder: str, limit: int = HISTORY_RUNS) -> str:
    """Return the history table of a published run and the `limit - 1` comparable runs before it."""
    from irismodel.report.build import written_answers  # the report: plots, not needed above

    root, name = split(run_folder.rstrip("/"))
    manifests = published_manifests(root)
    candidates = [(record, folder) for folder, record in manifests.items()]
    if (manifest := manifests.get(name)) is None:
        raise ValueError(f"run_folder: {run_folder!r} is not a published run")
    entries = []
    for record, folder in [(manifest, name), *comparable_runs(candidates, manifest)][:limit]:
        location = f"{root.rstrip('/')}/{folder}"
        files = list_result_files(location)
        fs = resolve(location, "run_folder")[0]
        column = ds.dataset(files, SCHEMA, filesystem=fs).to_table(columns=["outcome"])
        outcomes = pd.Series(column["outcome"].to_pylist(), dtype=object)
        entries.append((record, outcomes, written_answers(location)))
    return history_markdown(entries)


def history_markdown(
    entries: Sequence[tuple[Mapping[str, Any], pd.Series, Mapping[str, Any] | None]],
) -> str:
    """Return a markdown table of runs, newest first; entries: (`_run.json`, outcomes, answers).

    Answers (`answer_summary`'s): a slope shows with its interval, `-0.0036 [-0.0045, -0.0027]`.
    """
    given = dict.fromkeys(name for *_, answers in entries for name in answers or {})
    bounds = (" slope low", " slope high")  # shown in their slope's cell
    names = [n for n in given if n not in SHOWN_ELSEWHERE and not n.endswith(bounds)]
    head = ["started (UTC)", "run", "models", "wall", "model-epochs/s", "stalled", "diverged"]
    lines = ["| " + " | ".join([*head, *map(markdown_text, names)]) + " |"]
    lines.append("|---" * (len(head) + len(names)) + "|")
    for manifest, outcomes, answers in sorted(entries, key=lambda e: str(e[0].get("started_at"))):
        started, finished = manifest.get("started_at"), manifest.get("finished_at")
        wall = None
        if started and finished:
            gap = datetime.fromisoformat(finished) - datetime.fromisoformat(started)
            wall = gap.total_seconds()
        epochs = (manifest.get("parameters") or {}).get("epochs")
        known = outcomes.dropna()
        cells = [
            markdown_text(str(started or "-")[:16].replace("T", " ")),
            markdown_text(str(manifest.get("run_id", "?"))[:8]),  # as Prefect's UI shortens ids
            f"{len(outcomes):,}",
            f"{wall:.0f} s" if wall is not None else "-",
            f"{len(outcomes) * epochs / wall:,.0f}" if wall and epochs else "-",
            *(f"{(known == o).mean():.1%}" if len(known) else "-" for o in ("stalled", "diverged")),
            *(_cell(answers or {}, name) for name in names),
        ]
        lines.insert(2, "| " + " | ".join(cells) + " |")  # newest first
    return "\n".join(lines) + "\n"


def _number(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else markdown_text(value)


def _cell(answers: Mapping[str, Any], name: str) -> str:
    low, high = answers.get(f"{name} low"), answers.get(f"{name} high")
    shown = _number(answers.get(name))
    if name.endswith(" slope") and low is not None and high is not None:
        return f"{shown} [{_number(low)}, {_number(high)}]"
    return shown
