"""The shard task: a failed shard is retried, unless training was asked to stop."""

from irismodel.engine import clear_stop, request_stop
from tasks.train import train_shard


def test_a_failed_shard_is_retried_unless_a_stop_was_requested():
    """The task's retry condition lets Prefect retry a failed shard, but not after a stop
    request (Ctrl-C): the shard then ends at once."""
    retry = train_shard.retry_condition_fn
    assert train_shard.retries > 0 and retry(train_shard, None, None)
    request_stop()
    try:
        assert not retry(train_shard, None, None)
    finally:
        clear_stop()
    assert retry(train_shard, None, None)
