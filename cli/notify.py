"""Set up iris-sweep failure handling on a Prefect server: a webhook block and two automations."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from uuid import UUID

if TYPE_CHECKING:
    from prefect.events.schemas.automations import AutomationCore

FLOW_NAME = "iris-sweep"
AUTOMATION_NAME = "iris-sweep failed or crashed"
SILENT_AUTOMATION_NAME = "iris-sweep silent runs crashed"
BLOCK_NAME = "iris-sweep-failures"
EVENTS = ("prefect.flow-run.Failed", "prefect.flow-run.Crashed")
HEARTBEAT = "prefect.flow-run.heartbeat"
# prefect.yaml has every deployment's runs send a heartbeat each 30 s; a run silent for three
# of them has lost its process (a killed worker, a machine gone) and would stay Running forever.
SILENT_SECONDS = 90
SILENT_MESSAGE = "no heartbeat for {seconds} s: the process running the flow is gone"

# Jinja templates that the server renders when the automation fires. A run is named after its
# sweep when it starts; one that never started (a scheduled run whose worker died, say) keeps a
# random name, so the deployment and the parameters it was given say which sweep it was.
SUBJECT = (
    "iris-sweep flow run {{ flow_run.name }}"
    "{% if deployment %} ({{ deployment.name }}){% endif %} is {{ flow_run.state.name }}"
)
BODY = (
    "Flow run {{ flow_run.name }} ({{ flow_run.id }}) of iris-sweep"
    "{% if deployment %}, deployment {{ deployment.name }},{% endif %} entered"
    " {{ flow_run.state.name }}.\n"
    "Message: {{ flow_run.state.message }}\n"
    "Parameters given: {{ flow_run.parameters or 'none (the defaults)' }}\n"
    'UI: {{ flow_run|ui_url or "no link (the server has no PREFECT_UI_URL or PREFECT_API_URL)" }}'
)
# The JSON the block POSTs; the block fills {{subject}} and {{body}} in. `text` suits Slack.
PAYLOAD = {"subject": "{{subject}}", "body": "{{body}}", "text": "{{subject}}\n{{body}}"}


def check_webhook(url: str) -> str:
    """Return `url` if it is an http(s) URL with a host; raise ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"the webhook must be an http:// or https:// URL with a host, not {url!r}")
    return url


def save_block(name: str, webhook: str) -> UUID:
    """Create or overwrite the Custom Webhook block `name`; return its block document id."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = CustomWebhookNotificationBlock(name=name, url=webhook, method="POST", json_data=PAYLOAD)
    return block.save(name, overwrite=True)


def failure_automation(block_id: UUID) -> AutomationCore:
    """Return the automation: an iris-sweep flow run Failed or Crashed -> notify by the block."""
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    trigger = EventTrigger(
        expect=set(EVENTS),
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.role": "flow", "prefect.resource.name": FLOW_NAME},
        for_each={"prefect.resource.id"},  # each flow run on its own
        posture=Posture.Reactive,
        threshold=1,
        within=timedelta(0),
    )
    action = SendNotification(block_document_id=block_id, subject=SUBJECT, body=BODY)
    return _automation(
        AUTOMATION_NAME,
        f"Notify through the block of id {block_id} when {FLOW_NAME} fails or crashes.",
        trigger,
        action,
    )


def _automation(name: str, description: str, trigger: Any, action: Any) -> AutomationCore:
    """Return an enabled automation of one trigger and one action."""
    from prefect.events.schemas.automations import AutomationCore

    return AutomationCore(
        name=name,
        description=description,
        enabled=True,
        trigger=trigger,
        actions=[action],
        actions_on_trigger=[],
        actions_on_resolve=[],
    )


def silent_run_automation(seconds: int = SILENT_SECONDS) -> AutomationCore:
    """Return the automation: a deployment's iris-sweep run silent for `seconds` -> Crashed.

    Any event of the run (a heartbeat, a state change) within `seconds` keeps it alive; a run that
    ended sends no more heartbeats, so nothing arms the trigger after its last state change. The
    Crashed state then fires the failure automation like any other crash.
    """
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    trigger = EventTrigger(
        after={HEARTBEAT},
        expect={"prefect.flow-run.*"},
        match={"prefect.resource.id": "prefect.flow-run.*"},
        # runs of a deployment only: prefect.yaml sets their heartbeat; any other run beats
        # at Prefect's default of 180 s and would be marked Crashed while alive
        match_related=[
            {"prefect.resource.role": "flow", "prefect.resource.name": FLOW_NAME},
            {"prefect.resource.role": "deployment"},
        ],
        for_each={"prefect.resource.id"},
        posture=Posture.Proactive,
        threshold=1,
        within=timedelta(seconds=seconds),
    )
    action = ChangeFlowRunState(
        state=StateType.CRASHED, message=SILENT_MESSAGE.format(seconds=seconds)
    )
    return _automation(
        SILENT_AUTOMATION_NAME,
        f"Mark a {FLOW_NAME} run Crashed when its heartbeats stop for {seconds} s.",
        trigger,
        action,
    )


def save_automation(automation: AutomationCore) -> tuple[UUID, bool]:
    """Create the automation, or update the one of its name (and drop duplicates).

    Returns its id and whether it is new.
    """
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(automation.name)
        if not existing:
            return client.create_automation(automation), True
        first, *duplicates = existing
        client.update_automation(first.id, automation)
        for duplicate in duplicates:
            client.delete_automation(duplicate.id)
        return first.id, False


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, then create or update the block and the automation."""
    parser = argparse.ArgumentParser(
        prog="python -m cli.notify",
        description=f"Against the server of PREFECT_API_URL, create or update a webhook block, "
        f"the automation {AUTOMATION_NAME!r}, which POSTs to the webhook when a flow run of "
        f"{FLOW_NAME} ends Failed or Crashed, and the automation {SILENT_AUTOMATION_NAME!r}, which "
        "marks a run Crashed when its heartbeats stop. Running it again updates all three.",
    )
    parser.add_argument("--webhook", required=True, help="the URL to POST the JSON to")
    parser.add_argument("--name", default=BLOCK_NAME, help=f"the block's name ({BLOCK_NAME})")
    parser.add_argument(
        "--silent-after",
        type=int,
        default=SILENT_SECONDS,
        metavar="SECONDS",
        help=f"mark a run Crashed after this many seconds without a heartbeat ({SILENT_SECONDS}); "
        "keep it well above the deployments' heartbeat frequency (30 s in prefect.yaml)",
    )
    args = parser.parse_args(argv)
    if args.silent_after < 10:
        parser.error(f"--silent-after: {args.silent_after} is too short; give 10 seconds or more")
    try:
        webhook = check_webhook(args.webhook)
    except ValueError as error:
        parser.error(str(error))

    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        parser.error("PREFECT_API_URL is not set: point it at the server (README, 'Deploy')")
    block_id = save_block(args.name, webhook)
    print(f"block custom-webhook/{args.name}: {block_id}")
    for automation in (failure_automation(block_id), silent_run_automation(args.silent_after)):
        automation_id, created = save_automation(automation)
        done = "created" if created else "updated"
        print(f"automation {automation.name!r}: {automation_id} ({done})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
