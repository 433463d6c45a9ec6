"""A run about to be published, compared with the last published run like it in its location."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .listing import ResultsError, count_models, read_manifest
from .reader import read_results
from .runs import RunFolder, run_folders

# Runs compared at publication at most: two runs' rows are read whole (curves included).
COMPARED_MODELS = 200_000


def _published_manifests(root: str) -> list[tuple[dict[str, Any], str]]:
    """Every published run's manifest in `root` with its folder name; unreadable ones left out."""
    found = []
    for name in run_folders(root, staged=False).values():
        place = RunFolder(root, name)
        try:
            found.append((read_manifest(place.fs, place.path(staged=False)), name))
        except ResultsError:
            continue  # not a run this one can be compared with
    return found


def _json_safe(value: Any) -> Any:
    """`value` as strict JSON: tuples as lists, inf and NaN as text."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)  # numpy scalars and the like: never a reason to fail publication


def _compared_with(place: RunFolder, record: Mapping[str, Any], previous: str) -> dict[str, Any]:
    """The summary of run `place` compared with the published run `previous` of its location."""
    # imported here: the comparison imports the report (pandas, matplotlib), which runs never need
    from irismodel.compare import compare_runs

    summary: dict[str, Any] = {"previous_run": previous, "verdict": None}
    try:
        before = RunFolder(place.root, previous)
        sizes = {name: count_models(p) for name, p in (("this", place.staging),
                                                   ("previous", before.published))}  # fmt: skip
        if max(sizes.values()) > COMPARED_MODELS:
            summary["reason"] = (
                f"not compared at publication: {sizes['this']:,} and {sizes['previous']:,} "
                f"models, above {COMPARED_MODELS:,}; compare them with python -m "
                "irismodel.report --compare"
            )
            return summary
        found = compare_runs(
            read_results(before.published),
            read_manifest(before.fs, before.path(staged=False)),
            read_results(place.staging),
            record,
        )
    except Exception as error:  # a comparison never fails a publication
        return {**summary, "error": f"{type(error).__name__}: {error}"}
    fields = ("verdict", "reason", "matched", "changed_rows", "loss_difference", "loss_where")
    fields += ("outcome_changes", "prediction_changes", "environment", "parameters")
    summary |= {name: getattr(found, name) for name in fields}
    if found.fingerprints[0] != found.fingerprints[1]:
        summary["data_fingerprints"] = found.fingerprints
    return _json_safe(summary)


def compare_with_previous(place: RunFolder, record: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's `comparison` (and `comparison_same_data`) of a run about to be published.

    `comparison` is with `history.previous_run` of the location, `comparison_same_data` with the
    latest of the same data too where that is another run. Neither a run too large to compare
    nor a failed comparison stops the publication: the reason or error is recorded.
    """
    from irismodel.history import previous_run

    try:
        candidates = _published_manifests(place.root)
        previous = previous_run(candidates, record)
        same_data = previous_run(candidates, record, same_data=True)
    except Exception as error:  # a comparison never fails a publication
        return {"comparison": {"previous_run": None, "error": f"{type(error).__name__}: {error}"}}
    found: dict[str, Any] = {}
    if previous is None:
        reason = "no earlier published run of the same parameters in this location"
        found["comparison"] = {"previous_run": None, "verdict": None, "reason": reason}
    else:
        found["comparison"] = _compared_with(place, record, previous)
    if same_data is not None and same_data != previous:
        found["comparison_same_data"] = _compared_with(place, record, same_data)
    return found
