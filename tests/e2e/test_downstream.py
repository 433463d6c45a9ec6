"""A published nightly run's event starts a downstream deployment, through a real automation."""

import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

from irismodel.store import read_results

from . import servers
from .test_deployments import PREFECT, TINY, trigger, wait_for_final_state

pytestmark = [pytest.mark.e2e, pytest.mark.server, pytest.mark.subprocess]

AFTER_NIGHTLY = Path(__file__).with_name("after_nightly.yaml")
AUTOMATION = "after-nightly on iris-sweep.run.published"


def first_run_of(client, deployment_id: UUID, timeout: float) -> object:
    """Return the first flow run of a deployment, once there is one."""
    of_deployment = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    deadline = time.monotonic() + timeout
    while not (runs := client.read_flow_runs(deployment_filter=of_deployment)):
        assert time.monotonic() < deadline, f"no run of deployment {deployment_id} started"
        time.sleep(0.5)
    return runs[0]


def published_events(client, resource_id: str, timeout: float) -> list:
    """Return the `iris-sweep.run.published` events of a run, once the server recorded one."""
    about_the_run = EventFilter(
        event=EventNameFilter(name=["iris-sweep.run.published"]),
        resource=EventResourceFilter(id=[resource_id]),
    )
    deadline = time.monotonic() + timeout
    while not (events := client.read_events(filter=about_the_run, limit=50).events):
        assert time.monotonic() < deadline, f"no iris-sweep.run.published about {resource_id}"
        time.sleep(0.5)
    return events


@pytest.fixture()
def after_nightly(deployed, prefect_client) -> Iterator:
    """The downstream deployment deployed from its file, as the README shows; removed after,
    with its automation, so that no later nightly run of the session starts it."""
    env = deployed.server.env()
    servers.run_cli([PREFECT, "--no-prompt", "deploy", "--prefect-file", str(AFTER_NIGHTLY),
                     "--all"], env, timeout=180)  # fmt: skip
    downstream = prefect_client.read_deployment_by_name("iris-sweep/after-nightly")
    try:
        yield downstream
    finally:
        prefect_client.delete_deployment(downstream.id)
        for automation in prefect_client.read_automations_by_name(AUTOMATION):
            prefect_client.delete_automation(automation.id)


def test_a_published_nightly_run_starts_the_downstream_deployment(
    deployed, after_nightly, prefect_client, tmp_path: Path
) -> None:
    """A deployment whose trigger is `iris-sweep.run.published` from nightly runs after each
    published nightly run, created by that automation, with the location the event carries.

    nightly is run with tiny parameters; its run's event starts the downstream run, which
    completes on the worker and writes its own run into the nightly run's location. Its own
    publication starts nothing (the trigger wants nightly's runs).
    """
    env, downstream = deployed.server.env(), after_nightly
    (automation,) = prefect_client.read_automations_by_name(AUTOMATION)
    assert automation.enabled and automation.trigger.expect == {"iris-sweep.run.published"}
    (action,) = automation.actions
    assert (action.type, action.deployment_id) == ("run-deployment", downstream.id)

    location = tmp_path / "results"
    nightly_run = trigger("iris-sweep/nightly", {**TINY, "output_dir": str(location)}, env)
    log = deployed.worker.log_path
    wait_for_final_state(prefect_client, nightly_run, 120, log)
    (event,) = published_events(prefect_client, f"iris-sweep.run.{nightly_run}", 30)
    assert event.payload["rows"] == 2 * 2 * 2  # hidden_dims x optimizers x seeds
    assert {(r.role, r.name) for r in event.related} >= {("deployment", "nightly")}

    started = first_run_of(prefect_client, downstream.id, 60)
    assert started.created_by is not None, "the downstream run was not made by an automation"
    assert (started.created_by.type, started.created_by.id) == ("AUTOMATION", automation.id)
    assert started.created >= event.occurred
    # the deployment's parameters, and the location templated from the event
    assert started.parameters == {**TINY, "output_dir": str(location)}
    done = wait_for_final_state(prefect_client, started.id, 120, log)

    rows = read_results(str(location))  # both runs, one location
    assert set(rows["flow_run_id"]) == {str(nightly_run), str(done.id)}
    assert len(rows) == 2 * event.payload["rows"]
    # the downstream run's own event, recorded, given the time the nightly's took to act and 2 s
    (own,) = published_events(prefect_client, f"iris-sweep.run.{done.id}", 30)
    assert {(r.role, r.name) for r in own.related} >= {("deployment", "after-nightly")}
    time.sleep((started.created - event.occurred).total_seconds() + 2)
    runs = prefect_client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[downstream.id]))
    )
    assert [run.id for run in runs] == [done.id]  # its own event started no other
