"""Screenshots of the Prefect UI as a user sees it: the run form of a deployment, the Runs page.

Starts a temporary Prefect server (its own PREFECT_HOME), registers the flow as a deployment,
runs two small sweeps and the default one so that named, tagged runs are listed, and renders
the deployment's custom-run form, the Runs page and the default run's report and summary
artifacts in headless Chromium (`apt-get install chromium`).

    .venv/bin/python bench/screenshots.py --out docs/screenshots
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise SystemExit("needs Chromium: apt-get install chromium")


def screenshot(browser: str, url: str, path: Path, size: str, profile: Path) -> None:
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--screenshot={path}",
        f"--window-size={size}",
        "--virtual-time-budget=30000",
        url,
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    print(f"wrote {path}")


def latest_artifact(key: str) -> str:
    """Return the id of the newest artifact with `key`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    return str(found[0].id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    browser = chromium()
    args.out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="iris-sweep-ui-"))
    os.environ.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    os.environ["DO_NOT_TRACK"] = "1"
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.server import temporary_server

    try:
        with (
            temporary_server(home, ui=True) as api,
            temporary_settings(updates={PREFECT_API_URL: api}),
        ):
            from flows.iris_sweep import iris_sweep

            deployment_id = iris_sweep.to_deployment(name="nightly").apply()
            output = str(home / "results")
            small = dict(epochs=200, output_dir=output, report=False, device="cpu")
            iris_sweep(hidden_dims="8..10", optimizers=["sgd", "manual"], seeds="0..9", **small)
            iris_sweep(hidden_dims=[8, 12], optimizers=["adam"], seeds="0..4", **small)
            iris_sweep(output_dir=output, device="cpu")  # the default sweep, with its report
            ui = api.removesuffix("/api")
            profile = home / "chromium"
            screenshot(
                browser,
                f"{ui}/deployments/deployment/{deployment_id}/run",
                args.out / "run-form.png",
                "1400,2400",
                profile,
            )
            screenshot(browser, f"{ui}/runs", args.out / "runs.png", "1400,1000", profile)
            for key, name, size in (
                ("iris-sweep-report", "report.png", "1400,3200"),
                ("iris-sweep-summary", "summary-table.png", "1400,1200"),
            ):
                url = f"{ui}/artifacts/artifact/{latest_artifact(key)}"
                screenshot(browser, url, args.out / name, size, profile)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
