"""A run about to be published, compared with the last published run like it in its location."""

import contextlib
import json
from collections.abc import Mapping
from typing import Any

from .listing import ResultsError, count_models, read_manifest
from .reader import read_results
from .runs import RunFolder, run_folders

# Runs compared at publication at most: two runs' rows are read whole (curves included).
COMPARED_MODELS = 200_000


def published_manifests(root: str) -> dict[str, dict[str, Any]]:
    """Every published run's manifest in `root` by its folder name; unreadable ones left out."""
    manifests = {}
    for name in run_folders(root, staged=False).values():
        folder = RunFolder(root, name)
        with contextlib.suppress(ResultsError):  # not a run this one can be compared with
            manifests[name] = read_manifest(folder.fs, folder.path(staged=False))
    return manifests


def _compared_with(
    place: RunFolder, record: Mapping[str, Any], previous: str, manifests: Mapping[str, Any]
) -> dict[str, Any]:
    """Run `place` compared with the published run `previous` (its manifest in `manifests`)."""
    # imported here: the comparison imports the report (pandas, matplotlib), which runs never need
    from irismodel.compare import compare_runs

    summary: dict[str, Any] = {"previous_run": previous, "verdict": None}
    try:
        before = RunFolder(place.root, previous)
        models = count_models(place.staging), count_models(before.published)
        if max(models) > COMPARED_MODELS:
            summary["reason"] = (
                f"not compared at publication: {models[0]:,} and {models[1]:,} models, above "
                f"{COMPARED_MODELS:,}; compare them with python -m irismodel.report --compare"
            )
            return summary
        earlier = read_results(before.published)
        found = compare_runs(earlier, manifests[previous], read_results(place.staging), record)
    except Exception as error:  # a comparison never fails a publication
        return {**summary, "error": f"{type(error).__name__}: {error}"}
    fields = ("verdict", "reason", "matched", "changed_rows", "loss_difference", "loss_where")
    fields += ("outcome_changes", "prediction_changes", "environment", "parameters")
    summary |= {name: getattr(found, name) for name in fields}
    if found.fingerprints[0] != found.fingerprints[1]:
        summary["data_fingerprints"] = found.fingerprints
    # strict JSON: inf, NaN, numpy scalars and the like as text (never a reason to fail publication)
    return json.loads(json.dumps(summary, default=str), parse_constant=lambda c: str(float(c)))


def compare_with_previous(place: RunFolder, record: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's `comparison` (and `comparison_same_data`) of a run about to be published.

    With `history.previous_run` of the location (and the latest of the same data, if another); a
    run too large to compare or a failed comparison records why, never stopping the publication.
    """
    from irismodel.history import previous_run

    try:
        manifests = published_manifests(place.root)
        candidates = [(manifest, name) for name, manifest in manifests.items()]
        previous = previous_run(candidates, record)
        same_data = previous_run(candidates, record, same_data=True)
    except Exception as error:  # a comparison never fails a publication
        return {"comparison": {"previous_run": None, "error": f"{type(error).__name__}: {error}"}}
    reason = "no earlier published run of the same parameters in this location"
    found = {"comparison": {"previous_run": None, "verdict": None, "reason": reason}}
    if previous is not None:
        found["comparison"] = _compared_with(place, record, previous, manifests)
    if same_data is not None and same_data != previous:
        found["comparison_same_data"] = _compared_with(place, record, same_data, manifests)
    return found
