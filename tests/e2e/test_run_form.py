"""The deployments' run form, submitted as the Prefect UI does, and the runs it starts."""

import json
import shutil
import urllib.request
from pathlib import Path

import pytest

from irismodel.parameters import SweepConfig
from irismodel.store import read_results

from . import servers
from .test_deployments import wait_for_final_state

pytestmark = [pytest.mark.e2e, pytest.mark.server, pytest.mark.subprocess]


def validate_form(api_url: str, schema: dict, values: dict) -> dict:
    """POST the form's values to the server's form validation, as the UI's Submit does."""
    request = urllib.request.Request(
        f"{api_url}/ui/schemas/validate",
        data=json.dumps({"schema": schema, "values": values}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_the_untouched_form_and_a_form_with_ranges_are_accepted_and_run(
    deployed, prefect_client, tmp_path: Path
) -> None:
    """The adhoc form's own defaults, and ranges typed into it, pass the server and run.

    The untouched form sends every parameter's schema default (null for the optional ones) and
    runs the default sweep as it stands; the typed one has ranges in hidden_dims and seeds. A
    form with a shard_size of 0 is refused by the same check, so the check is live.
    """
    adhoc = prefect_client.read_deployment_by_name("iris-sweep/adhoc")
    schema = adhoc.parameter_openapi_schema
    untouched = {name: field.get("default") for name, field in schema["properties"].items()}
    assert untouched["data_path"] is None and untouched["shard_size"] is None
    typed = {
        **untouched,
        "hidden_dims": "8..10, 12",
        "seeds": "0..3, 7",
        "epochs": 20,
        "output_dir": str(tmp_path / "typed"),
    }
    api_url = deployed.server.api_url
    for values in (untouched, typed):
        assert validate_form(api_url, schema, values) == {"valid": True, "errors": []}
    refused = validate_form(api_url, schema, {**typed, "shard_size": 0})
    assert not refused["valid"] and "shard_size" in json.dumps(refused["errors"])

    untouched_run = prefect_client.create_flow_run_from_deployment(adhoc.id, parameters=untouched)
    typed_run = prefect_client.create_flow_run_from_deployment(adhoc.id, parameters=typed)
    log = deployed.worker.log_path
    done = wait_for_final_state(prefect_client, untouched_run.id, 300, log)
    wait_for_final_state(prefect_client, typed_run.id, 120, log)

    # the untouched run wrote into the default output_dir, in the project's folder (where the
    # pull step sends the worker): read its folder, then remove it
    folders = list((servers.PROJECT_ROOT / untouched["output_dir"]).glob(f"*-{done.id}"))
    assert len(folders) == 1, folders
    try:
        rows = read_results(str(folders[0]))
    finally:
        shutil.rmtree(folders[0])
    default = SweepConfig(output_dir=str(tmp_path))
    configurations = len(default.hidden_dims) * len(default.optimizers)
    assert len(rows) == configurations * len(default.seeds) * len(default.split_seeds)
    assert rows["loss_curve"].map(len).eq(default.epochs).all()

    typed_rows = read_results(typed["output_dir"])
    assert sorted(set(typed_rows["hidden_dim"])) == [8, 9, 10, 12]
    assert sorted(set(typed_rows["seed"])) == [0, 1, 2, 3, 7]
    assert set(typed_rows["flow_run_id"]) == {str(typed_run.id)}
