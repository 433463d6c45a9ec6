"""Names on disk: run ids cannot smuggle path parts in, and every name reads back as written."""

import os
import socket
from datetime import UTC, datetime

from irismodel.store import layout

STARTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_file_names_stay_inside_the_location():
    """Run ids cannot smuggle path parts into run folder names."""
    for run_id in ("../../etc/x y", "/etc/cron.d/evil", "..", "\0", ""):
        name = layout.run_folder_name(run_id, STARTED)
        assert "/" not in name and ".." not in name and "\0" not in name
        assert name.startswith(layout.FILE_PREFIX)


def test_a_run_folder_name_gives_back_its_run_id():
    """A run folder's name holds its start and its (safe) id, which reads back from it."""
    name = layout.run_folder_name("3f2a-b/c", STARTED)
    assert name == "iris-sweep-20260102T030405Z-3f2a-b_c"
    assert layout.folder_run_id(name) == layout.safe_id("3f2a-b/c") == "3f2a-b_c"
    assert layout.folder_run_id("iris-sweep-old") is None


def test_hidden_and_temporary_names():
    """Temporaries are hidden and unique; hidden names are no results."""
    first, second = layout.temporary_name("a.parquet"), layout.temporary_name("a.parquet")
    assert first != second and layout.is_temporary(first) and layout.is_hidden(first)
    assert not layout.is_temporary("a.parquet") and not layout.is_hidden("a.parquet")
    assert layout.is_hidden(layout.MANIFEST) and layout.is_hidden(layout.STAGING)


def test_configuration_and_writer_names():
    """A configuration is `h<hidden_dim>-<optimizer>`; a writer is `host:pid`."""
    assert layout.configuration_name(8, "sgd") == "h8-sgd"
    assert layout.writer_id() == f"{socket.gethostname()}:{os.getpid()}"
    assert layout.writer_id(1) == f"{socket.gethostname()}:1"
