"""The task runner: the bound on a Dask cluster without workers; the wait on the shard tasks."""

import pytest

from flows.runners import NO_WORKER_DEFAULT_SECONDS, NO_WORKER_VARIABLE, no_worker_timeout


@pytest.mark.parametrize("text", ["abc", "0", "-1", "nan", "inf", "1e999"])
def test_a_no_worker_bound_that_is_not_a_positive_number_is_refused_by_name(monkeypatch, text):
    """A no-worker bound that is not a positive finite number is refused, naming the variable."""
    monkeypatch.setenv(NO_WORKER_VARIABLE, text)
    with pytest.raises(ValueError, match=f"{NO_WORKER_VARIABLE}: expected a positive number"):
        no_worker_timeout()


def test_the_no_worker_bound_is_read_from_the_environment_with_a_default(monkeypatch):
    """The no-worker bound is the variable's value in seconds, or the default when unset."""
    monkeypatch.setenv(NO_WORKER_VARIABLE, " 2.5 ")
    assert no_worker_timeout() == 2.5
    monkeypatch.delenv(NO_WORKER_VARIABLE)
    assert no_worker_timeout() == NO_WORKER_DEFAULT_SECONDS


def test_the_wait_returns_the_failed_shards_causes_in_plan_order_and_counts_each_end():
    """Shards ending in any order: each end is counted once, and the failed ones come back with
    their causes in the order of the plan, not of their ends."""
    import uuid
    from concurrent.futures import Future

    from prefect.futures import PrefectConcurrentFuture
    from prefect.states import Completed, Failed

    from flows.runners import wait_for_shards

    names = ["h8-sgd-0000", "h8-sgd-0001", "h9-sgd-0000", "h9-sgd-0001"]
    ends = {name: Future() for name in names}
    futures = [PrefectConcurrentFuture(uuid.uuid4(), ends[name]) for name in names]
    for name in reversed(names):  # the last shard of the plan ends first
        fails = name.endswith("0001")
        ends[name].set_result(Failed(message=f"{name} broke") if fails else Completed())
    counted = []
    failed, stopped = wait_for_shards(futures, names, lambda: counted.append(1))
    assert failed == {"h8-sgd-0001": "h8-sgd-0001 broke", "h9-sgd-0001": "h9-sgd-0001 broke"}
    assert list(failed) == ["h8-sgd-0001", "h9-sgd-0001"] and stopped is None
    assert len(counted) == 4


# Two tiny runs called from Python in a process of their own, where no setting names a heartbeat
# frequency: the first as it is, the second with a frequency set; their flow run ids printed.
_TWO_RUNS = """
import sys
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from flows.iris_sweep import iris_sweep

tiny = dict(hidden_dims=[8], optimizers=["sgd"], seeds=[0], split_seeds="0", epochs=2,
            device="cpu", report=False, output_dir=sys.argv[1])
plain = iris_sweep(**tiny, return_state=True)
with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 30}):
    asked = iris_sweep.with_options(retries=0)(**tiny, return_state=True)
EventsWorker.drain_all(timeout=30)
print(plain.state_details.flow_run_id, asked.state_details.flow_run_id)
"""


def _flow_run_events(flow_run_id: str) -> list[str]:
    """The names of the events the server has recorded about one flow run."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventResourceFilter

    about = EventFilter(resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"]))
    with get_client(sync_client=True) as client:
        return [event.event for event in client.read_events(filter=about, limit=50).events]


@pytest.mark.subprocess
def test_runs_called_from_python_send_heartbeats_only_when_a_frequency_is_set(
    prefect_harness, tmp_path
):
    """A run called from Python sends no heartbeat by default; with a frequency set, even on a
    copy made by `with_options`, it does (and a deployment's runs have theirs from prefect.yaml)."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if "HEARTBEAT" not in k}
    env["PREFECT_API_URL"] = prefect_harness
    done = subprocess.run(
        [sys.executable, "-c", _TWO_RUNS, str(tmp_path)],
        cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    plain, asked = done.stdout.split()[-2:]
    deadline = time.monotonic() + 30
    while "prefect.flow-run.Completed" not in (found := _flow_run_events(plain)):
        assert time.monotonic() < deadline, f"the plain run's end was not recorded: {found}"
        time.sleep(0.5)
    while "prefect.flow-run.heartbeat" not in (beats := _flow_run_events(asked)):
        assert time.monotonic() < deadline, f"no heartbeat of the run that set one: {beats}"
        time.sleep(0.5)
    assert "prefect.flow-run.heartbeat" not in _flow_run_events(plain)


def test_a_copy_of_the_flow_with_other_options_keeps_the_heartbeat_rule():
    """`iris_sweep.with_options(...)` is still a `SweepFlow`, with the options asked for."""
    from flows.iris_sweep import iris_sweep
    from flows.runners import SweepFlow

    copy = iris_sweep.with_options(retries=1)
    assert isinstance(iris_sweep, SweepFlow) and isinstance(copy, SweepFlow)
    assert copy.retries == 1 and copy.name == iris_sweep.name
