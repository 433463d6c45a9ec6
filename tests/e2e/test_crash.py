"""A deployment's run whose worker and flow process are killed: Crashed, notified, retried."""

import re
import time
from pathlib import Path

import pytest

from cli.notify import SILENT_AUTOMATION_NAME
from irismodel.store import read_results

from . import servers
from .servers import notify_here
from .test_deployments import trigger, wait_for_final_state

pytestmark = [pytest.mark.e2e, pytest.mark.server, pytest.mark.subprocess]

# Heartbeats come each 30 s (prefect.yaml; Prefect's least). The run is killed within seconds of
# its first one, so a short silence is enough here; the retry runs under the usual 90 s.
SILENT = 20
# 7 hidden_dims x 6 shards of 300 seeds: long enough to kill between shards, short to retry.
SWEEP = {
    "hidden_dims": "8..14",
    "optimizers": ["sgd"],
    "split_seeds": "0",
    "seeds": "0..1799",
    "shard_size": 300,
    "epochs": 1000,
    "reference_seeds": 0,
    "report": False,
}


def staged_parts(output: Path) -> dict[str, bytes]:
    """Return the run's part files in staging (written, renamed in place), name -> bytes."""
    return {path.name: path.read_bytes() for path in output.glob(".staging/*/[!.]*.parquet")}


def test_a_killed_run_is_crashed_notified_and_finished_by_a_retry(
    deployed, prefect_client, webhook: servers.Webhook, tmp_path: Path
) -> None:
    """SIGKILL of a worker and its flow run: Crashed, a POST, and Retry trains only what is missing.

    The run sends heartbeats as every deployment's do; the automation of `cli.notify` marks
    it Crashed once they stop, the failure automation POSTs it, and a Retry as the UI makes it
    (AwaitingRetry) finishes the same run: the parts written before the kill are kept byte for
    byte and only the others are trained, by the new flow process.
    """
    from prefect.states import AwaitingRetry

    env = deployed.server.env()
    output = tmp_path / "out"
    notify_here(deployed.server.api_url, "--webhook", webhook.url, "--silent-after", str(SILENT))
    try:
        run_id = trigger("iris-sweep/adhoc", {**SWEEP, "output_dir": str(output)}, env)
        servers.wait_until(lambda: len(staged_parts(output)) >= 3, 120, "three parts written", None)
        deployed.worker.kill()
        kept = staged_parts(output)
        assert prefect_client.read_flow_run(run_id).state.is_running()

        killed_at = time.monotonic()
        deadline = killed_at + SILENT + 40  # the trigger's window, the server's checks, slack
        while not (flow_run := prefect_client.read_flow_run(run_id)).state.is_crashed():
            assert time.monotonic() < deadline, f"still {flow_run.state.name}"
            time.sleep(1)
        assert re.search(r"no heartbeat for \d+ s", flow_run.state.message)
        posted = webhook.wait_for(lambda body: str(run_id) in body["body"], timeout=30)
        # named after its sweep (it had started), with its deployment and parameters
        assert posted["subject"] == f"iris-sweep flow run {flow_run.name} (adhoc) is Crashed"
        assert flow_run.name == "h8-14_sgd_s1800_e1000"
        assert "no heartbeat" in posted["body"] and "'seeds': '0..1799'" in posted["body"]

        # the usual silence again before the retry, which may run longer than SILENT
        notify_here(deployed.server.api_url, "--webhook", webhook.url)
        deployed.worker.start()
        prefect_client.set_flow_run_state(run_id, AwaitingRetry(), force=True)
        wait_for_final_state(prefect_client, run_id, 120, deployed.worker.log_path)
    finally:
        # the usual silence again, for the other tests
        notify_here(deployed.server.api_url, "--webhook", webhook.url)
        if deployed.worker.process is None:
            deployed.worker.start()

    (folder,) = output.glob("iris-sweep-*")
    parts = {path.name: path.read_bytes() for path in folder.glob("*.parquet")}
    assert len(parts) == 7 * 6 and len(kept) < len(parts)
    assert {name: parts[name] for name in kept} == kept  # byte for byte
    pids = {name: servers.worker_pids(read_results(str(folder / name))) for name in parts}
    before = set().union(*(pids[name] for name in kept))
    after = set().union(*(pids[name] for name in parts if name not in kept))
    assert len(before) == 1 and len(after) == 1 and before != after  # two flow processes
    rows = read_results(str(folder))
    assert len(rows) == 7 * 1800
    (automation,) = prefect_client.read_automations_by_name(SILENT_AUTOMATION_NAME)
    assert automation.trigger.within.total_seconds() == 90
