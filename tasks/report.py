"""The report task (summary, answers, plots as Prefect artifacts) and the sweep's progress bar."""

import re
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_logger

from irismodel.history import run_history
from irismodel.report import EPOCH_OF_INTEREST, report_of, report_prefix, summary_table
from irismodel.report.build import written_answers
from irismodel.report.comparison import comparison_markdown, manifest_comparisons
from irismodel.report.text import markdown_text
from irismodel.store.locations import base_name, browser_url, child, redact, split
from tasks.api import api_answers, bounded

# Stable keys: the Prefect UI shows each key's history across runs.
SUMMARY_KEY = "iris-sweep-summary"
REPORT_KEY = "iris-sweep-report"
RESULTS_KEY = "iris-sweep-results"
PROGRESS_KEY = "iris-sweep-progress"
COMPARISON_KEY = "iris-sweep-comparison"
HISTORY_KEY = "iris-sweep-history"
T = TypeVar("T")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


@task(name="publish-report", cache_policy=NO_CACHE, persist_result=False)
def publish_report(
    path: str, flow_run_id: str, epoch: int = EPOCH_OF_INTEREST
) -> dict[str, Any] | None:
    """Publish the run's report, comparison and history as artifacts; return its key numbers.

    The key numbers are `irismodel.report.build.answer_summary`'s: per rule, the slope of the
    loss on hidden_dim with its interval and p-value, and the median accuracy (JSON-safe).

    The PNGs and the markdown go beside the Parquet files, named after the run (`_<run>-*.png`),
    so runs never overwrite each other's and folder readers skip them. The results are the
    product and a report a bonus: if it cannot be made (a full disk, a Prefect API that does
    not answer and would hold its artifacts) it is a warning and None, never a failed run.
    """
    logger = get_run_logger()
    if not api_answers():
        logger.warning("no report: the Prefect API does not answer")
        return None
    try:
        return _publish_report(path, flow_run_id, epoch)
    except Exception as error:
        logger.warning("the report could not be made: %s", error)
        return None


def _publish_report(path: str, flow_run_id: str, epoch: int) -> dict[str, Any] | None:
    report = report_of(path, run_ids=[flow_run_id], epoch=epoch, prefix=report_prefix(path))
    table = summary_table(report.summary)
    create_table_artifact(
        # numbers stay numbers (the UI sorts them); a missing one is null, never NaN
        table=table.astype(object).where(table.notna(), None).to_dict("records"),
        key=SUMMARY_KEY,
        description=(
            "Per (hidden_dim, optimizer): converged/stalled/oscillating/diverged with Wilson 95% "
            "rates; median, mean and 95% bootstrap interval over seeds and splits, one number "
            f"per column; run {flow_run_id}."
        ),
    )
    create_markdown_artifact(
        markdown=report.markdown,
        key=REPORT_KEY,
        description=f"The notebook's two questions answered, with plots; run {flow_run_id}.",
    )
    shown = redact(path)
    url = browser_url(path)
    if url is not None:
        create_link_artifact(
            link=url,
            link_text=base_name(shown),
            key=RESULTS_KEY,
            description=f"The results of run {flow_run_id}: a folder of Parquet files.",
        )
    else:  # a file:// link does not open from an http page: show the location to copy instead
        create_markdown_artifact(
            markdown=results_markdown(flow_run_id, shown),
            key=RESULTS_KEY,
            description=f"Where the results of run {flow_run_id} are (text: no link opens it).",
        )
    logger = get_run_logger()
    for warning in report.answers.warnings:
        logger.warning("%s", warning)
    comparisons = manifest_comparisons(path)
    previous = comparisons.get("comparison", {}).get("previous_run")
    earlier = written_answers(child(split(path.rstrip("/"))[0], previous)) if previous else None
    create_markdown_artifact(
        markdown=comparison_markdown(comparisons, (earlier, report.key_numbers)),
        key=COMPARISON_KEY,
        description=f"Run {flow_run_id} compared with the last published run like it.",
    )
    try:
        create_markdown_artifact(
            markdown=run_history(path),
            key=HISTORY_KEY,
            description=f"Run {flow_run_id} and the runs of the same parameters before it.",
        )
    except (OSError, ValueError) as error:  # an unreadable older run: the history only
        logger.warning("no history artifact: %s", error)
    logger.info(
        "published artifacts %s, %s, %s, %s, %s; plots at %s, %s and %s",
        SUMMARY_KEY,
        REPORT_KEY,
        RESULTS_KEY,
        COMPARISON_KEY,
        HISTORY_KEY,
        report.paths["loss_curves"],
        report.paths["accuracy"],
        report.paths["slope_by_epoch"],
    )
    return report.key_numbers


def results_markdown(flow_run_id: str, location: str) -> str:
    """Return the results artifact of a location without a browser link: the location as text.

    The location is escaped, never put in a code span or fence that a backtick or a newline in
    it could close: control characters are shown as escapes (`\\n`), markdown and HTML inert.
    """
    visible = _CONTROL.sub(lambda found: found.group().encode("unicode_escape").decode(), location)
    return (
        f"The results of run {flow_run_id}, a folder of Parquet files, one row a model. "
        f"No link opens it from this page; copy its location:\n\n{markdown_text(visible)}\n\n"
        "Read it with `pandas.read_parquet(location)` or "
        "`irismodel.store.read_results(location)`."
    )


class Progress:
    """The run's progress artifact: shards trained, evaluated and written, of the run's total.

    Made and advanced from the flow's body (artifacts attach to the flow run from there). A
    progress bar is never worth failing, or holding, a sweep: each call to the API is bounded
    (`API_TIMEOUT_SECONDS`), and after one fails no other is tried.
    """

    def __init__(self, total: int, done: int = 0) -> None:
        self.total, self.done = total, done
        self.artifact_id = self._call(
            "created",
            lambda: create_progress_artifact(
                progress=100.0 * done / max(total, 1),
                key=PROGRESS_KEY,
                description=_progress_text(done, total),
            ),
        )

    def advance(self) -> None:
        """Count one more shard done and show it."""
        self.done += 1
        artifact_id, done, total = self.artifact_id, self.done, self.total
        if artifact_id is not None:
            self._call(
                "updated, and no longer tried in this run",
                lambda: update_progress_artifact(
                    artifact_id=artifact_id,
                    progress=100.0 * done / max(total, 1),
                    description=_progress_text(done, total),
                ),
            )

    def _call(self, what: str, call: Callable[[], T]) -> T | None:
        try:
            return bounded("the Prefect API", call)
        except Exception as error:
            self.artifact_id = None
            get_logger("iris-sweep").warning("progress artifact not %s: %s", what, error)
            return None


def _progress_text(done: int, total: int) -> str:
    return f"Shards trained, evaluated and written: {done} of {total}"
