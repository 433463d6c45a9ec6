"""The task runner's settings from the environment: the bound on a Dask cluster without workers."""

from __future__ import annotations

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
