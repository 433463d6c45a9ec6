"""Prefect flows of iris-sweep: they only wire tasks together."""

import os

# iris-sweep runs offline: the server's analytics heartbeat can only fail there, and its
# errors clutter every run. prefect.toml says the same for runs from the project folder; this
# covers runs from anywhere else. An explicit setting in the environment still wins.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# The temporary server of an ad hoc run can need more than Prefect's default 20 s to start on a
# busy machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
