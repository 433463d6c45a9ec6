"""A run's publication, and only it, sends `iris-sweep.run.published`: read back from the server."""

import json
import socket
import time
import uuid
from pathlib import Path

import pytest

from irismodel.report import report_prefix
from irismodel.store import file_metadata, read_results

TINY = dict(
    hidden_dims=[8], optimizers=["sgd", "manual"], split_seeds="0", seeds=[0, 1], epochs=5,
    device="cpu",
)  # fmt: skip


def _events(name: str, resource_id: str | None = None) -> list:
    """Every event of this name (and resource) the server has recorded, oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    found = EventFilter(
        event=EventNameFilter(name=[name]),
        resource=EventResourceFilter(id=[resource_id]) if resource_id else None,
    )
    with get_client(sync_client=True) as client:
        page = client.read_events(filter=found, limit=50)
    return sorted(page.events, key=lambda event: event.occurred)


def _recorded(name: str, resource_id: str, timeout: float = 30.0) -> list:
    """The events of `name` about `resource_id`, once the server has recorded at least one."""
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=10)
    deadline = time.monotonic() + timeout
    while not (found := _events(name, resource_id)):
        assert time.monotonic() < deadline, f"no {name} event about {resource_id} recorded"
        time.sleep(0.5)
    return found


def _all_sent_recorded() -> None:
    """Wait until everything this process sent so far is recorded: a marker sent last is."""
    from prefect.events import emit_event

    marker = f"iris-sweep-tests.marker.{uuid.uuid4()}"
    emit_event("iris-sweep-tests.marker", resource={"prefect.resource.id": marker})
    _recorded("iris-sweep-tests.marker", marker)


@pytest.fixture(scope="module")
def published_run(prefect_harness, tmp_path_factory):
    """A tiny run whose first attempt fails on one shard, finished by a resume, then met again
    by a third flow run of the same run id, which finds it published; its events recorded."""
    import irismodel.sweep
    import tasks.prepare
    from flows.iris_sweep import iris_sweep

    folder = str(tmp_path_factory.mktemp("results"))
    real_training, real_open = irismodel.sweep.train_batched, tasks.prepare.open_run

    def failing(x_train, y_train, hidden_dim, optimizer, *args, **kwargs):
        if optimizer == "manual":
            raise RuntimeError("injected fault")
        return real_training(x_train, y_train, hidden_dim, optimizer, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(irismodel.sweep, "train_batched", failing)
        patch.setattr("flows.iris_sweep.train_shard", _without_retries())
        failed = iris_sweep(**TINY, output_dir=folder, return_state=True)
    assert failed.is_failed()
    run_id = str(failed.state_details.flow_run_id)
    resumed = iris_sweep(output_dir=folder, resume=run_id, return_state=True)
    path = resumed.result()
    with pytest.MonkeyPatch.context() as patch:  # a Retry of the run that published it
        patch.setattr(
            tasks.prepare, "open_run", lambda config, _, **k: real_open(config, run_id, **k)
        )
        again = iris_sweep(**TINY, output_dir=folder, return_state=True)
    assert again.is_completed() and again.result() == path
    _all_sent_recorded()
    events = _events("iris-sweep.run.published", f"iris-sweep.run.{run_id}")
    return run_id, path, str(resumed.state_details.flow_run_id), events


def _without_retries():
    from tasks.train import train_shard

    return train_shard.with_options(retries=0)


@pytest.mark.server
def test_the_flow_run_that_publishes_the_run_sends_one_event(published_run):
    """One event for the run: sent by the resume that published it, none by the failed first
    attempt nor by the later flow run that found it published; about the run's folder."""
    run_id, path, publisher, events = published_run
    (event,) = events
    assert event.resource.id == f"iris-sweep.run.{run_id}"
    assert event.resource["iris-sweep.location"] == path
    assert event.resource.name == path.rsplit("/", 1)[1]
    (flow_run,) = [r for r in event.related if r.role == "flow-run"]
    assert flow_run.id == f"prefect.flow-run.{publisher}"
    assert {r.role for r in event.related} >= {"flow", "task-run"}


@pytest.mark.server
def test_the_event_carries_the_run_s_rows_parameters_and_location(published_run):
    """The payload holds the run's id, location, row count, parameters and the report's key
    numbers, as the run's files say."""
    run_id, path, _, (event,) = published_run
    payload = event.payload
    assert payload["run_id"] == run_id and payload["location"] == path
    assert payload["rows"] == len(read_results(path)) == 2 * 2
    assert payload["parameters"] == file_metadata(path)["parameters"]
    assert payload["parameters"]["seeds"] == "0..1"
    written = Path(path) / f"{report_prefix(path)}-answers.json"  # the report's key numbers
    assert payload["answers"] == json.loads(written.read_text())
    assert payload["answers"]["sgd accuracy"] > 0  # a number, not a placeholder


@pytest.mark.server
def test_an_api_that_does_not_answer_is_no_event_and_no_error(published_run):
    """Without an API that answers, the task sends nothing and returns None, never raises
    (Prefect's own sending would take the event and lose it later, unsaid)."""
    from prefect.logging import disable_run_logger
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tasks.events import announce_published

    _, path, _, _ = published_run
    with socket.socket() as probe:  # a port nothing listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/api"
    with temporary_settings(updates={PREFECT_API_URL: closed}), disable_run_logger():
        assert announce_published.fn(path) is None
