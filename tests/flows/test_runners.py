"""The task runner: the bound on a Dask cluster without workers; the wait on the shard tasks."""

import pytest

from flows.runners import NO_WORKER_DEFAULT_SECONDS, NO_WORKER_VARIABLE, no_worker_timeout


@pytest.mark.parametrize("text", ["abc", "0", "-1", "nan", "inf", "1e999"])
def test_a_no_worker_bound_that_is_not_a_positive_number_is_refused_by_name(monkeypatch, text):
    """A no-worker bound that is not a positive finite number is refused, naming the variable."""
    monkeypatch.setenv(NO_WORKER_VARIABLE, text)
    with pytest.raises(ValueError, match=f"{NO_WORKER_VARIABLE}: expected a positive number"):
        no_worker_timeout()


def test_the_no_worker_bound_is_read_from_the_environment_with_a_default(monkeypatch):
    """The no-worker bound is the variable's value in seconds, or the default when unset."""
    monkeypatch.setenv(NO_WORKER_VARIABLE, " 2.5 ")
    assert no_worker_timeout() == 2.5
    monkeypatch.delenv(NO_WORKER_VARIABLE)
    assert no_worker_timeout() == NO_WORKER_DEFAULT_SECONDS


def test_the_wait_returns_the_failed_shards_causes_in_plan_order_and_counts_each_end():
    """Shards ending in any order: each end is counted once, and the failed ones come back with
    their causes in the order of the plan, not of their ends."""
    import uuid
    from concurrent.futures import Future

    from prefect.futures import PrefectConcurrentFuture
    from prefect.states import Completed, Failed

    from flows.runners import wait_for_shards

    names = ["h8-sgd-0000", "h8-sgd-0001", "h9-sgd-0000", "h9-sgd-0001"]
    ends = {name: Future() for name in names}
    futures = [PrefectConcurrentFuture(uuid.uuid4(), ends[name]) for name in names]
    for name in reversed(names):  # the last shard of the plan ends first
        fails = name.endswith("0001")
        ends[name].set_result(Failed(message=f"{name} broke") if fails else Completed())
    counted = []
    failed, stopped = wait_for_shards(futures, names, lambda: counted.append(1))
    assert failed == {"h8-sgd-0001": "h8-sgd-0001 broke", "h9-sgd-0001": "h9-sgd-0001 broke"}
    assert list(failed) == ["h8-sgd-0001", "h9-sgd-0001"] and stopped is None
    assert len(counted) == 4
