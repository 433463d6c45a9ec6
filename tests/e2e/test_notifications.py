"""`python -m cli.notify` on a real server: its automation POSTs to a webhook on failures."""

import re
import sys
from pathlib import Path
from uuid import UUID

import pytest

from cli.notify import AUTOMATION_NAME, EVENTS, HEARTBEAT, SILENT_AUTOMATION_NAME

from . import servers
from .servers import Webhook

pytestmark = [pytest.mark.e2e, pytest.mark.server, pytest.mark.subprocess]

BLOCK_TYPE = "custom-webhook"


def notify(env: dict[str, str], *args: str) -> str:
    """Run `python -m cli.notify ARGS` as the README does; return its output."""
    command = [sys.executable, "-m", "cli.notify", *args]
    return servers.run_cli(command, env, timeout=60).stdout


FAIL_A_SWEEP = """
import sys
from flows.iris_sweep import iris_sweep
state = iris_sweep(epochs=0, output_dir=sys.argv[1], return_state=True)
print("RESULT", state.state_details.flow_run_id, state.type.value)
"""


def test_a_failed_sweep_posts_its_run_state_message_and_link(
    prefect_server, prefect_client, webhook: Webhook, tmp_path: Path
) -> None:
    """A sweep that fails on a real server POSTs its run, state, message, parameters and link."""
    env = prefect_server.env()
    servers.notify_here(prefect_server.api_url, "--webhook", webhook.url)

    # epochs=0 is an integer but refused by the flow's preflight: a real Failed run.
    output = servers.run_cli(
        [sys.executable, "-c", FAIL_A_SWEEP, str(tmp_path / "out")], env, timeout=120
    ).stdout
    run_id, state = re.search(r"RESULT ([0-9a-f-]{36}) (\w+)", output).groups()
    assert state == "FAILED", output
    flow_run = prefect_client.read_flow_run(UUID(run_id))

    body = webhook.wait_for(lambda body: run_id in body["body"])
    assert body["subject"] == f"iris-sweep flow run {flow_run.name} is Failed"
    assert f"Flow run {flow_run.name} ({run_id}) of iris-sweep entered Failed." in body["body"]
    assert "epochs: 0 is not allowed" in body["body"]  # the state's message
    assert "Parameters given: {" in body["body"] and "'epochs': 0," in body["body"]
    ui_url = prefect_server.api_url.removesuffix("/api")
    assert f"UI: {ui_url}/runs/flow-run/{run_id}" in body["body"]
    assert body["text"] == f"{body['subject']}\n{body['body']}"


def test_a_crashed_sweep_posts_and_another_flow_does_not(
    prefect_server, prefect_client, webhook: Webhook
) -> None:
    """A crashed iris-sweep run POSTs to the webhook; a failed run of another flow does not."""
    from prefect import flow
    from prefect.states import Crashed, Failed, Running

    servers.notify_here(prefect_server.api_url, "--webhook", webhook.url)

    @flow(name="not-iris-sweep")
    def other() -> None: ...

    @flow(name="iris-sweep")
    def stand_in() -> None: ...  # the same flow, by name, as flows.iris_sweep's

    # A Failed run of another flow first: its event is processed before the crash's.
    other_run = prefect_client.create_flow_run(other, state=Running())
    prefect_client.set_flow_run_state(other_run.id, Failed(message="not ours"), force=True)
    crashed = prefect_client.create_flow_run(stand_in, state=Running())
    message = "the worker's machine went away"
    prefect_client.set_flow_run_state(crashed.id, Crashed(message=message), force=True)

    body = webhook.wait_for(lambda body: str(crashed.id) in body["body"])
    assert body["subject"] == f"iris-sweep flow run {crashed.name} is Crashed"
    assert f"Message: {message}" in body["body"]
    assert not [body for body in webhook.bodies if str(other_run.id) in body["body"]]


def test_notify_twice_leaves_one_automation_and_one_block(
    prefect_server, prefect_client, webhook: Webhook
) -> None:
    """Set up twice, as the README does: one block, its URL the second's, and one of each
    automation, updated."""
    env = prefect_server.env()
    first = notify(env, "--webhook", "http://127.0.0.1:9/old", "--name", "twice")
    assert f"automation {AUTOMATION_NAME!r}" in first
    second = notify(env, "--webhook", webhook.url, "--name", "twice")
    assert "(updated)" in second

    blocks = prefect_client.read_block_documents_by_type(BLOCK_TYPE)
    (block,) = [block for block in blocks if block.name == "twice"]
    assert block.data["url"] == webhook.url  # the second run's URL replaced the first
    assert block.data["method"] == "POST"

    (automation,) = prefect_client.read_automations_by_name(AUTOMATION_NAME)
    assert automation.enabled
    assert automation.trigger.expect == set(EVENTS)
    assert automation.trigger.match_related.model_dump() == {
        "prefect.resource.role": "flow",
        "prefect.resource.name": "iris-sweep",
    }
    (action,) = automation.actions
    assert (action.type, action.block_document_id) == ("send-notification", block.id)
    assert "{{ flow_run.state.message }}" in action.body
    (silent,) = prefect_client.read_automations_by_name(SILENT_AUTOMATION_NAME)
    assert (silent.trigger.after, silent.trigger.posture) == ({HEARTBEAT}, "Proactive")
    (crash,) = silent.actions
    assert (crash.type, crash.state.value) == ("change-flow-run-state", "CRASHED")
