"""A location's runs over time: the previous run like a given one, and the history table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from irismodel.compare import comparable_parameters
from irismodel.report.text import markdown_text


def previous_run(
    candidates: Sequence[tuple[Mapping[str, Any], str]],
    manifest: Mapping[str, Any],
    same_data: bool = False,
) -> str | None:
    """Return the folder of the latest earlier complete run comparable to `manifest`, or None."""
    wanted = comparable_parameters(manifest.get("parameters") or {})
    started = str(manifest.get("started_at") or "~")  # ISO times in UTC sort as text
    fingerprint = manifest.get("data_fingerprint")
    best: tuple[str, str] | None = None
    for record, folder in candidates:
        when = str(record.get("started_at") or "")
        if (
            record.get("status") == "complete"
            and record.get("run_id") != manifest.get("run_id")
            and when <= started
            and comparable_parameters(record.get("parameters") or {}) == wanted
            and (not same_data or record.get("data_fingerprint") == fingerprint)
            and (best is None or (when, folder) > best)
        ):
            best = (when, folder)
    return None if best is None else best[1]


def history_markdown(
    entries: Sequence[tuple[Mapping[str, Any], pd.Series, Mapping[str, Any] | None]],
) -> str:
    """Return a markdown table of runs, newest first; entries: (`_run.json`, outcomes, answers)."""
    names = list(dict.fromkeys(name for *_, answers in entries for name in answers or {}))
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
            markdown_text(manifest.get("run_id", "?")),
            f"{len(outcomes):,}",
            f"{wall:.0f} s" if wall is not None else "-",
            f"{len(outcomes) * epochs / wall:,.0f}" if wall and epochs else "-",
            *(f"{(known == o).mean():.1%}" if len(known) else "-" for o in ("stalled", "diverged")),
            *(_number((answers or {}).get(name)) for name in names),
        ]
        lines.insert(2, "| " + " | ".join(cells) + " |")  # newest first
    return "\n".join(lines) + "\n"


def _number(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else markdown_text(value)
