"""A run compared with an earlier one: the manifest's comparisons in words, and any two runs."""

from __future__ import annotations  # irismodel.compare imports this package: annotations wait

from collections.abc import Mapping
from typing import Any

import pandas as pd
import pyarrow.fs as pafs

from irismodel import compare
from irismodel.store import layout, locations
from irismodel.store.listing import read_manifest
from irismodel.store.reader import read_results

from .settings import ReportError
from .text import Clean, markdown_text, plain

# The manifest's comparisons (written at publication) by key, and each one's heading.
COMPARISONS = {"comparison": "Compared with the last run like it",
               "comparison_same_data": "Compared with the last run of the same data"}  # fmt: skip
NOTHING = "nothing to compare this run with"
Comparisons = Mapping[str, Mapping[str, Any]]  # by key, as `manifest_comparisons` returns them


def manifest_comparisons(location: str | pd.DataFrame) -> dict[str, Mapping[str, Any]]:
    """Return a run folder's manifest comparisons with an earlier run (or their error); else {}."""
    if not isinstance(location, str):
        return {}
    try:
        fs, path = locations.resolve(location, "location")
        if not layout.is_run_folder(fs.get_file_info(path)):
            return {}
        manifest = read_manifest(fs, path)
    except (ValueError, OSError):  # no manifest to read: the rows' own errors say the rest
        return {}
    found = {key: manifest.get(key) for key in COMPARISONS}
    found = {k: v for k, v in found.items() if isinstance(v, Mapping)}
    # a first run's "no earlier run" is no section of its report
    return {k: v for k, v in found.items() if v.get("previous_run") or v.get("error")}


def _number(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, int | float) else plain(value)


def comparison_lines(found: Mapping[str, Any], clean: Clean = plain) -> list[str]:
    """Return a manifest's comparison summary as lines; `clean` makes stored values safe."""
    previous, reason = found.get("previous_run"), found.get("reason")
    if previous is None:
        return [clean(found.get("error") or reason or "no earlier run to compare with")]
    lines = [f"previous run: {clean(previous)}"]
    if found.get("error") or not found.get("verdict"):
        return [*lines, f"not compared: {clean(found.get('error') or reason)}"]
    lines.append(f"verdict: {clean(found['verdict'])}: {clean(reason)}")
    for name in ("environment", "parameters", "data_fingerprints"):
        changes = found.get(name) or {}
        if name == "data_fingerprints":  # a pair, present only where the data changed
            changes = {"fingerprint": changes} if changes else {}
        pairs = [(k, p) for k, p in changes.items() if isinstance(p, list | tuple) and len(p) == 2]
        shown = "; ".join(f"{clean(k)} {clean(a)} -> {clean(b)}" for k, (a, b) in pairs)
        lines.append(f"{name.split('_')[0]}: {shown or 'unchanged'}")
    where = found.get("loss_where")
    lines.append(
        f"loss curves: largest absolute difference {_number(found.get('loss_difference'))}"
        + (f" ({clean(where)})" if where else "")
        + f"; outcomes changed: {_number(found.get('outcome_changes'))}; test predictions "
        f"changed: {_number(found.get('prediction_changes'))}"
    )
    return lines


def comparison_warnings(comparisons: Comparisons, clean: Clean = plain) -> list[str]:
    """Return one line per comparison whose verdict is a WARNING, for the report's top."""
    return [
        f"WARNING: {COMPARISONS[key].lower().replace('compared with', 'unlike')} "
        f"({clean(found.get('previous_run'))}): {clean(found.get('reason'))}"
        for key, found in comparisons.items()
        if found.get("verdict") == compare.WARNING
    ]


def comparison_sections(comparisons: Comparisons) -> list[str]:
    """Return markdown lines: a section per comparison, its lines as a list."""
    lines = []
    for key, found in comparisons.items():
        lines += [f"## {COMPARISONS[key]}", ""]
        lines += [*(f"- {line}" for line in comparison_lines(found, markdown_text)), ""]
    return lines


def _side(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}" if isinstance(value, float) else markdown_text(value)


def comparison_markdown(
    comparisons: Comparisons,
    answers: tuple[Mapping[str, Any] | None, Mapping[str, Any] | None] = (None, None),
) -> str:
    """Return a run's comparisons as markdown: any WARNING first, then each comparison.

    `answers`: the key numbers of the last run like it and of this one, shown side by side.
    """
    lines = [f"> **{line}**\n" for line in comparison_warnings(comparisons, markdown_text)]
    lines += comparison_sections(comparisons)
    if comparisons and any(answers):
        before, after = (found or {} for found in answers)
        lines += ["## The answers, the last run like it -> this one", ""]
        for name in {**before, **after}:
            was, now = (_side(found.get(name)) for found in (before, after))
            lines.append(f"- {markdown_text(name)}: {was} -> {now}")
    return "\n".join(lines) or f"No earlier published run of the same parameters: {NOTHING}.\n"


def compare_folders(before: str, after: str) -> compare.Comparison:
    """Compare run folder `after` with `before`, read whole; `ReportError` naming `--compare`."""
    from .build import written_answers  # the answers each run's report wrote, if any

    loaded = []
    try:
        for name, folder in (("RUN_A", before), ("RUN_B", after)):
            fs, path = locations.resolve(folder, "--compare")
            if fs.get_file_info(path).type != pafs.FileType.Directory:
                raise ReportError(f"{name} {locations.redact(folder)!r} is no folder")
            manifest = read_manifest(fs, path, ReportError, f"{name} is not a run folder")
            loaded.append((read_results(folder), manifest))
        answers = (written_answers(before), written_answers(after))
        return compare.compare_runs(*loaded[0], *loaded[1], *answers)
    except (ValueError, OSError) as error:
        raise ReportError(f"--compare: {error}") from error
