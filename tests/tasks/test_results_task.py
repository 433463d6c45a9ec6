"""The message of a run left unpublished: the failed shards, their cause, the parts on disk."""

import re

from irismodel import store, sweep
from irismodel.data import load_dataset, split_dataset
from irismodel.parameters import SweepConfig
from irismodel.store.lock import release_lock
from tasks.results import failure_message

TINY = dict(
    hidden_dims=[8, 9], optimizers=["sgd", "manual"], split_seeds="0", seeds=[0, 1], epochs=40
)


def _opened_run(tmp_path, written: int):
    """Open a run of four shards and write the first `written` of them; return its context."""
    config = SweepConfig(**TINY, device="cpu", output_dir=str(tmp_path))
    opened = store.open_run(config, "lost")
    context = sweep.context_of(opened, config)
    shards = store.plan_shards(config)
    for shard in shards[:written]:
        sweep.run_shard(split_dataset(load_dataset()), shard, context)
    release_lock(opened.place)
    return context, shards


def test_a_failure_message_counts_the_shards_on_disk_and_names_a_missing_cause(tmp_path):
    """With the scheduler gone every task reads as failed with no cause; the message counts the
    parts actually written and says no cause was reported, never "None"."""
    context, shards = _opened_run(tmp_path, written=3)
    message = failure_message({s.name: "None" for s in shards}, shards, context)
    assert re.search(
        r"4 of 4 shards did not finish .* 3 of the 4 shards are written and kept", message
    )
    assert message.endswith(
        "no cause was reported (the worker or the scheduler running it may have died)"
    )


def test_a_lost_cluster_leads_the_message_and_asks_for_workers(tmp_path):
    """A wait stopped by a lost cluster says so first, lists the shards in the order given, and
    says to start workers before the resume."""
    context, shards = _opened_run(tmp_path, written=1)
    lost = "the Dask cluster at tcp://127.0.0.1:1 has had no workers for 5 s"
    failed = {shard.name: lost for shard in shards[1:]}
    message = failure_message(failed, shards, context, stopped=lost)
    assert message.startswith(f"{lost}; 3 of 4 shards did not finish: ")
    assert ", ".join(failed) in message
    assert re.search(r"1 of the 4 shards are written and kept, unpublished, .*; start workers, "
                     r"then finish the run with `iris-sweep --resume lost`", message)  # fmt: skip
