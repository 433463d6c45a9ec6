"""Set up iris-sweep failure notifications on a Prefect server: a webhook block, an automation."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit
from uuid import UUID

if TYPE_CHECKING:
    from prefect.events.schemas.automations import AutomationCore

FLOW_NAME = "iris-sweep"
AUTOMATION_NAME = "iris-sweep failed or crashed"
BLOCK_NAME = "iris-sweep-failures"
EVENTS = ("prefect.flow-run.Failed", "prefect.flow-run.Crashed")

# Jinja templates that the server renders when the automation fires.
SUBJECT = "iris-sweep flow run {{ flow_run.name }} is {{ flow_run.state.name }}"
BODY = (
    "Flow run {{ flow_run.name }} ({{ flow_run.id }}) of iris-sweep entered"
    " {{ flow_run.state.name }}.\n"
    "Message: {{ flow_run.state.message }}\n"
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
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

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
    return AutomationCore(
        name=AUTOMATION_NAME,
        description=f"Notify through the block of id {block_id} when {FLOW_NAME} fails or crashes.",
        enabled=True,
        trigger=trigger,
        actions=[action],
        actions_on_trigger=[],
        actions_on_resolve=[],
    )


def save_automation(block_id: UUID) -> tuple[UUID, bool]:
    """Create the automation, or update it (and drop duplicates); return its id and if it is new."""
    from prefect.client.orchestration import get_client

    automation = failure_automation(block_id)
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(AUTOMATION_NAME)
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
        prog="python -m flows.notify",
        description=f"Against the server of PREFECT_API_URL, create or update a webhook block and "
        f"the automation {AUTOMATION_NAME!r}, which POSTs to the webhook when a flow run of "
        f"{FLOW_NAME} ends Failed or Crashed. Running it again updates both.",
    )
    parser.add_argument("--webhook", required=True, help="the URL to POST the JSON to")
    parser.add_argument("--name", default=BLOCK_NAME, help=f"the block's name ({BLOCK_NAME})")
    args = parser.parse_args(argv)
    try:
        webhook = check_webhook(args.webhook)
    except ValueError as error:
        parser.error(str(error))

    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        parser.error("PREFECT_API_URL is not set: point it at the server (README, 'Deploy')")
    block_id = save_block(args.name, webhook)
    automation_id, created = save_automation(block_id)
    print(f"block custom-webhook/{args.name}: {block_id}")
    done = "created" if created else "updated"
    print(f"automation {AUTOMATION_NAME!r}: {automation_id} ({done})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
