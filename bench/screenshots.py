"""Screenshots of the Prefect UI as a user sees it: run form, Runs page, report, a retried crash.

Starts a temporary Prefect server (its own PREFECT_HOME), registers the flow as a deployment,
runs two small sweeps and the default one so that named, tagged runs are listed, and renders
the deployment's custom-run form, the Runs page and the default run's report and summary
artifacts in headless Chromium (`apt-get install chromium`). Then, driving Chromium through its
DevTools protocol: the untouched form's Submit clicked, and what the UI shows after. With
`--crash`, it also deploys prefect.yaml, sets up `cli.notify`, starts a worker, SIGKILLs it
and its flow run mid-sweep, waits for the automation to mark the run Crashed, retries it as the
UI's Retry does and renders the run's page once it completed (about 2 more minutes). With
`--history`, three runs of the same parameters into one location, then the third's comparison
and history artifacts and the comparison key's page (every run's comparison).

    .venv/bin/python bench/screenshots.py --out docs/screenshots [--crash] [--history]
"""

import argparse
import base64
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
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


class DevTools:
    """A headless Chromium driven through its DevTools protocol: navigate, run script, capture."""

    def __init__(self, browser: str, profile: Path, size: tuple[int, int]) -> None:
        from websockets.sync.client import connect

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--remote-debugging-port={port}", f"--user-data-dir={profile}",
             f"--window-size={size[0]},{size[1]}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as response:
                    pages = [t for t in json.loads(response.read()) if t["type"] == "page"]
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        self.socket = connect(pages[0]["webSocketDebuggerUrl"], max_size=None)
        self.ids = itertools.count(1)
        self.call("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1],
                  deviceScaleFactor=1, mobile=False)  # fmt: skip

    def call(self, method: str, **params: object) -> dict:
        """Send one command; return its result (events in between are dropped)."""
        sent = next(self.ids)
        self.socket.send(json.dumps({"id": sent, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == sent:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def open(self, url: str, settle: float = 8.0) -> None:
        """Load `url` and give the UI's scripts `settle` seconds to render."""
        self.call("Page.navigate", url=url)
        time.sleep(settle)

    def evaluate(self, script: str) -> object:
        """Run `script` in the page; return its value."""
        return self.call("Runtime.evaluate", expression=script, returnByValue=True)["result"].get(
            "value"
        )

    def capture(self, path: Path) -> None:
        """Write the page as it is now to `path` (PNG)."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        print(f"wrote {path}")

    def close(self) -> None:
        self.socket.close()
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=10)


CLICK_SUBMIT = """
(() => {
  const button = [...document.querySelectorAll('button')]
    .find(b => b.textContent.trim() === 'Submit');
  if (!button) return 'no Submit button';
  button.click();
  return 'clicked';
})()
"""


def submitted_form(browser: str, ui: str, deployment_id: str, out: Path, home: Path) -> None:
    """Render the untouched run form after its Submit: the run it created, or the refusal."""
    tools = DevTools(browser, home / "chromium-devtools", (1400, 1100))
    try:
        tools.open(f"{ui}/deployments/deployment/{deployment_id}/run")
        clicked = tools.evaluate(CLICK_SUBMIT)
        if clicked != "clicked":
            raise SystemExit(f"the run form: {clicked}")
        time.sleep(8)
        tools.capture(out / "run-form-submitted.png")
        print("after Submit:", tools.evaluate("location.pathname"))
    finally:
        tools.close()


def crashed_and_retried(browser: str, ui: str, api: str, out: Path, home: Path) -> None:
    """Deploy, kill a run's worker and flow process, let it crash, retry it, render its page."""
    import psutil
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.states import AwaitingRetry
    from prefect.workers.process import ProcessWorker

    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_WORKER_QUERY_SECONDS": "1"}
    bin_dir = Path(sys.executable).parent
    output = home / "crash"
    with get_client(sync_client=True) as client:
        template = ProcessWorker.get_default_base_job_template()
        for pool in ("iris-sweep", "iris-sweep-gpu"):
            client.create_work_pool(WorkPoolCreate(name=pool, type="process",
                                                   base_job_template=template))  # fmt: skip
        run = lambda *args: subprocess.run(args, env=env, cwd=ROOT, check=True,  # noqa: E731
                                           capture_output=True, text=True)  # fmt: skip
        run(str(bin_dir / "prefect"), "--no-prompt", "deploy", "--all")
        run(sys.executable, "-m", "cli.notify", "--webhook", "http://127.0.0.1:9/none",
            "--silent-after", "20")  # fmt: skip
        start = lambda: subprocess.Popen(  # noqa: E731
            [str(bin_dir / "prefect"), "worker", "start", "--pool", "iris-sweep"], env=env,
            cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        worker = start()
        deployment = client.read_deployment_by_name("iris-sweep/adhoc")
        parameters = dict(hidden_dims="8..14", optimizers=["sgd"], seeds="0..1799",
                          shard_size=300, reference_seeds=0, output_dir=str(output))  # fmt: skip
        flow_run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
        while len(list(output.glob(".staging/*/[!.]*.parquet"))) < 3:
            time.sleep(0.25)
        for process in [*psutil.Process(worker.pid).children(True), psutil.Process(worker.pid)]:
            process.kill()
        worker.wait()
        while not client.read_flow_run(flow_run.id).state.is_crashed():
            time.sleep(1)
        run(sys.executable, "-m", "cli.notify", "--webhook", "http://127.0.0.1:9/none")
        worker = start()  # the retry runs under the usual silence, 90 s
        client.set_flow_run_state(flow_run.id, AwaitingRetry(), force=True)
        while not client.read_flow_run(flow_run.id).state.is_final():
            time.sleep(1)
        print("after the retry:", client.read_flow_run(flow_run.id).state.name)
        for process in [*psutil.Process(worker.pid).children(True), psutil.Process(worker.pid)]:
            process.terminate()
        worker.wait(timeout=30)
    tools = DevTools(browser, home / "chromium-crash", (1400, 1300))
    try:
        tools.open(f"{ui}/runs/flow-run/{flow_run.id}", settle=10)
        tools.capture(out / "crashed-then-retried.png")
    finally:
        tools.close()


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
    parser.add_argument("--crash", action="store_true", help="also the crashed-then-retried run")
    parser.add_argument("--only-new", action="store_true", help="skip the plain page renders")
    parser.add_argument(
        "--history", action="store_true", help="also three runs alike: comparison and history"
    )
    args = parser.parse_args()
    browser = chromium()
    args.out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="iris-sweep-ui-"))
    os.environ.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    os.environ["DO_NOT_TRACK"] = "1"
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from cli.server import temporary_server

    try:
        with (
            temporary_server(home, ui=True) as api,
            temporary_settings(updates={PREFECT_API_URL: api}),
        ):
            from flows.iris_sweep import iris_sweep

            deployment_id = iris_sweep.to_deployment(name="nightly").apply()
            output = str(home / "results")
            small = dict(epochs=200, output_dir=output, report=False, device="cpu")
            if not args.only_new:
                iris_sweep(hidden_dims="8..10", optimizers=["sgd", "manual"], seeds="0..9", **small)
                iris_sweep(hidden_dims=[8, 12], optimizers=["adam"], seeds="0..4", **small)
                iris_sweep(output_dir=output, device="cpu")  # the default sweep, with its report
            ui = api.removesuffix("/api")
            profile = home / "chromium"
            if not args.only_new:
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
            if args.history:  # three runs of the same parameters into one location
                alike = dict(hidden_dims="8..11", seeds="0..29", split_seeds="0..1", epochs=300)
                for _ in range(3):
                    iris_sweep(output_dir=str(home / "nightly"), device="cpu", **alike)
                for key, name, size in (
                    ("iris-sweep-comparison", "comparison.png", "1400,1000"),
                    ("iris-sweep-history", "history.png", "2300,650"),
                ):
                    url = f"{ui}/artifacts/artifact/{latest_artifact(key)}"
                    screenshot(browser, url, args.out / name, size, profile)
                url = f"{ui}/artifacts/key/iris-sweep-comparison"
                screenshot(browser, url, args.out / "comparison-key.png", "1400,900", profile)
            submitted_form(browser, ui, str(deployment_id), args.out, home)
            if args.crash:
                crashed_and_retried(browser, ui, api, args.out, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
