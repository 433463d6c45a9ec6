"""Two runs compared: what changed in environment, data and parameters, and how far rows moved."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from irismodel.report.text import markdown_text, plain

KEY = ("split_seed", "seed", "hidden_dim", "optimizer")  # one model of a run
# No results: devices and engines are compared as environment, the data by its fingerprint.
NOT_RESULTS = ("flow_run_id", "run_started_at", "run_status", "worker", "shard", "train_seconds")
NOT_RESULTS += ("device", "engine", "data_source")
# Rows hold test metrics, not predictions: a changed prediction changes one (changes can cancel).
PREDICTION_COLUMNS = ("test_accuracy", "test_precision", "test_recall", "test_f1")
NOT_PARAMETERS = ("resume", "output_dir", "force", "report", "name", "run_name")
NOT_ENVIRONMENT = ("prefect",)  # the orchestrator shapes no result
IDENTICAL, EXPECTED, WARNING = "identical", "expected", "WARNING"
CHUNK = 4096  # models whose curves are compared at once
Clean = Callable[[Any], str]  # makes a value from the data safe to show


@dataclass(frozen=True)
class Comparison:
    """Run `after` against run `before`: what differs, as (before, after), and a verdict."""

    before: str  # the runs' ids
    after: str
    verdict: str  # IDENTICAL, EXPECTED or WARNING
    reason: str  # why, and by how much the rows moved
    environment: dict[str, tuple[Any, Any]]  # versions, provenance, devices, engines
    parameters: dict[str, tuple[Any, Any]]
    fingerprints: tuple[str | None, str | None]  # the data's
    matched: int  # models in both runs, by KEY
    only_before: int
    only_after: int
    changed_rows: int  # matched models that differ in any result column
    loss_difference: float  # largest |difference| of loss curves (inf: NaN or other lengths)
    loss_where: str | None  # that difference's model and epoch
    outcome_changes: int
    prediction_changes: int
    columns: dict[str, tuple[int, float | None]]  # column -> (models, largest |difference|)
    answers: dict[str, tuple[Any, Any]]  # every answer given, side by side

    def findings(self, clean: Clean = plain) -> list[tuple[str, str]]:
        """The comparison as (label, text) lines; `clean` makes values from the data safe."""
        prints = self.fingerprints
        data = {"fingerprint": prints} if prints[0] != prints[1] else {}
        sizes = (
            f"{clean(c)} {n}" + (f" (up to {s:.3g})" if s else "")
            for c, (n, s) in self.columns.items()
        )
        where = f" ({clean(self.loss_where)})" if self.loss_where else ""
        counts = (self.matched, self.only_before, self.only_after)
        predictions = self.prediction_changes
        return [
            ("environment", _pairs(self.environment, clean)),
            ("data", _pairs(data, clean)),
            ("parameters", _pairs(self.parameters, clean)),
            ("models", "{} in both, {} only before, {} only after".format(*counts)),
            ("loss curves", f"largest absolute difference {self.loss_difference:.3g}{where}"),
            ("changed", f"{self.outcome_changes} outcomes, {predictions} test predictions"),
            ("models changed, by column", ", ".join(sizes) or "none"),
            ("answers", _pairs(self.answers, clean, "none given")),
        ]

    def text(self) -> str:
        """The comparison for the terminal: the verdict first, then one line per finding."""
        head = f"Run {plain(self.after)} compared with {plain(self.before)}: {self.verdict}"
        lines = (f"  {label}: {value}" for label, value in self.findings())
        return "\n".join([f"{head}: {plain(self.reason)}", *lines])

    def markdown(self) -> str:
        """The comparison as markdown for an artifact: heading, verdict, a two-column table."""
        rows = (f"| {label} | {value} |" for label, value in self.findings(markdown_text))
        heading = f"### Run {markdown_text(self.after)} compared with {markdown_text(self.before)}"
        verdict = f"**{self.verdict}**: {markdown_text(self.reason)}"
        return "\n".join([heading, "", verdict, "", "| | |", "|---|---|", *rows]) + "\n"


def _pairs(found: Mapping[str, tuple], clean: Clean, empty: str = "unchanged") -> str:
    shown = (f"{clean(k)} {_show(a, clean)} -> {_show(b, clean)}" for k, (a, b) in found.items())
    return "; ".join(shown) or empty


def _show(value: Any, clean: Clean) -> str:
    if value is None:
        return "not recorded"
    return f"{value:.6g}" if isinstance(value, float) else clean(value)


def comparable_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Return the parameters that decide what a run computes (no output_dir, resume, ...)."""
    kept = {k: v for k, v in parameters.items() if k not in NOT_PARAMETERS}
    if "split_seed" in kept:  # a run from before splits were an axis: its one split
        kept["split_seeds"] = str(kept.pop("split_seed"))
    return kept


def _environment(manifest: Mapping[str, Any], rows: pd.DataFrame) -> dict[str, Any]:
    """Versions, provenance over them (older runs have versions only), devices, engines."""
    found = {**(manifest.get("versions") or {}), **(manifest.get("provenance") or {})}
    for column in ("device", "engine"):
        found[column] = ", ".join(sorted(map(str, rows[column].dropna().unique())))
    return {k: v for k, v in found.items() if k not in NOT_ENVIRONMENT}


def _differences(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, tuple]:
    keys = {**before, **after}  # before's order, then what only after has
    return {k: (before.get(k), after.get(k)) for k in keys if before.get(k) != after.get(k)}


def _gaps(x: Any, y: Any) -> np.ndarray:
    """|x - y| elementwise as float64: 0 where equal or both NaN, inf where one only is NaN."""
    a, b = np.asarray(x, np.float64), np.asarray(y, np.float64)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(invalid="ignore"):  # inf - inf where both are inf: `same` covers it
        gaps = np.abs(np.where(same, 0.0, a - b))
    return np.where(np.isnan(gaps), np.inf, gaps)


def _row_gaps(a: Any, b: Any) -> np.ndarray:
    """One model's gaps; a single inf where one list is null or the lengths differ."""
    if a is None or b is None or len(a) != len(b):
        return np.array([0.0 if a is None and b is None else np.inf])
    return _gaps(a, b)


def _list_gaps(x: pd.Series, y: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Per model, two list columns' largest gap and its index."""
    largest, where = np.zeros(len(x)), np.zeros(len(x), np.int64)
    for start in range(0, len(x), CHUNK):
        xs, ys = (s.iloc[start : start + CHUNK].tolist() for s in (x, y))
        part = slice(start, start + len(xs))
        lengths = {-1 if v is None else len(v) for v in xs + ys}
        if len(lengths) == 1 and min(lengths) > 0:
            gaps = _gaps(np.stack(xs), np.stack(ys))  # (models, epochs): the usual case
            largest[part], where[part] = gaps.max(1, initial=0.0), gaps.argmax(1)
        else:  # nulls or lists of other lengths: one model at a time
            rows = [_row_gaps(a, b) for a, b in zip(xs, ys, strict=True)]
            largest[part] = [gaps.max(initial=0.0) for gaps in rows]
            where[part] = [gaps.argmax() if gaps.size else 0 for gaps in rows]
    return largest, where


def _is_list(column: pd.Series) -> bool:
    values = column.dropna()
    return len(values) > 0 and isinstance(values.iloc[0], list | np.ndarray)


def _checked(rows: pd.DataFrame, name: str) -> pd.DataFrame:
    if missing := [c for c in (*KEY, "device", "engine") if c not in rows]:
        raise ValueError(f"{name}: the rows lack {', '.join(missing)}; give read_results' rows")
    if repeated := int(rows.duplicated(list(KEY)).sum()):
        raise ValueError(f"{name}: {repeated} rows repeat a model's key {KEY}; give one run's rows")
    return rows


def compare_runs(
    before: pd.DataFrame,
    before_manifest: Mapping[str, Any],
    after: pd.DataFrame,
    after_manifest: Mapping[str, Any],
    answers_before: Mapping[str, Any] | None = None,
    answers_after: Mapping[str, Any] | None = None,
) -> Comparison:
    """Compare run `after` with run `before`, each given by its rows and its `_run.json`.

    Models match by KEY, NaN equals NaN. `expected` if environment, data or parameters changed
    or on a GPU, `identical` if all models match, else `WARNING`. ValueError: rows lacking the
    KEY, device or engine columns, or repeating a KEY.
    """
    merged = _checked(before, "before").merge(
        _checked(after, "after"), on=list(KEY), how="outer", suffixes=("@0", "@1"), indicator=True
    )
    both = merged[merged["_merge"] == "both"].reset_index(drop=True)
    columns: dict[str, tuple[int, float | None]] = {}
    changed, predictions = np.zeros(len(both), bool), np.zeros(len(both), bool)
    loss, loss_where = 0.0, None
    for name in (c for c in before if c in after and c not in (*KEY, *NOT_RESULTS)):
        x, y = both[f"{name}@0"], both[f"{name}@1"]
        size: float | None = None
        if _is_list(x) or _is_list(y):
            largest, where = _list_gaps(x, y)
            differ, size = largest > 0, float(largest.max(initial=0.0))
            if name == "loss_curve" and size > 0:
                row = int(largest.argmax())
                model = ", ".join(f"{k} {both.at[row, k]}" for k in KEY)
                loss, loss_where = size, f"{model}, epoch {where[row] + 1}"
        elif pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x):
            gaps = _gaps(x.to_numpy(np.float64), y.to_numpy(np.float64))
            differ, size = gaps > 0, float(gaps.max(initial=0.0))
        else:
            differ = ~(x.eq(y) | (x.isna() & y.isna())).to_numpy(bool)
        if differ.any():
            columns[name] = (int(differ.sum()), size)
            changed |= differ
            predictions |= differ if name in PREDICTION_COLUMNS else False
    given, m0, m1 = (answers_before or {}, answers_after or {}), before_manifest, after_manifest
    parameters = [comparable_parameters(m.get("parameters") or {}) for m in (m0, m1)]
    found: dict[str, Any] = dict(
        before=str(m0.get("run_id", "?")),
        after=str(m1.get("run_id", "?")),
        environment=_differences(_environment(m0, before), _environment(m1, after)),
        parameters=_differences(*parameters),
        fingerprints=(m0.get("data_fingerprint"), m1.get("data_fingerprint")),
        matched=len(both),
        only_before=int((merged["_merge"] == "left_only").sum()),
        only_after=int((merged["_merge"] == "right_only").sum()),
        changed_rows=int(changed.sum()),
        loss_difference=loss,
        loss_where=loss_where,
        outcome_changes=columns.get("outcome", (0, None))[0],
        prediction_changes=int(predictions.sum()),
        columns=columns,
        answers={k: (given[0].get(k), given[1].get(k)) for k in {**given[0], **given[1]}},
    )
    gpu = any("cuda" in str(device) for device in (*before["device"], *after["device"]))
    return Comparison(**found, **_verdict(found, gpu))


def _verdict(found: Mapping[str, Any], gpu: bool) -> dict[str, str]:
    alone = found["only_before"] + found["only_after"]
    moved = (
        f"{found['changed_rows']} of {found['matched']} models differ (loss curves by up to "
        f"{found['loss_difference']:.3g}; outcomes changed: {found['outcome_changes']}; test "
        f"predictions changed: {found['prediction_changes']})"
        + (f", {alone} models in one run only" if alone else "")
    )
    changes = [name for name in ("environment", "parameters") if found[name]]
    changes += ["data"] if found["fingerprints"][0] != found["fingerprints"][1] else []
    if changes:
        return {"verdict": EXPECTED, "reason": f"the {' and '.join(changes)} changed: {moved}"}
    if not found["changed_rows"] and not alone:
        return {"verdict": IDENTICAL, "reason": f"all {found['matched']} models bit-identical"}
    if gpu:
        return {"verdict": EXPECTED, "reason": f"on a GPU, which need not round alike: {moved}"}
    return {"verdict": WARNING, "reason": f"same environment and data on the CPU, yet {moved}"}
