"""Locations: names cannot leave them, checks are bounded and leave nothing, secrets never shown."""

import os

import pytest

from irismodel.store import locations


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../evil.parquet", "a/b.parquet", "/etc/passwd", "..\\evil", "a\0b"],
)
def test_join_refuses_names_that_leave_the_location(tmp_path, name):
    """A name with a path separator, '..', '.', a NUL or nothing at all is refused."""
    with pytest.raises(ValueError, match=r"refusing file name .*: it must be a plain name"):
        locations.child(str(tmp_path), name)


def test_join_keeps_plain_names_inside(tmp_path):
    """A plain name, dots included, joins onto a folder or a URI inside it."""
    assert locations.child(str(tmp_path), "..a.parquet") == str(tmp_path / "..a.parquet")
    assert locations.child("s3://bucket/runs/", "x.parquet") == "s3://bucket/runs/x.parquet"
    assert locations.split("s3://b/runs/x.png?region=r") == ("s3://b/runs?region=r", "x.png")


def test_check_location_leaves_nothing_behind(tmp_path):
    """Checking an existing or a new folder creates no file and no folder."""
    locations.check_location(str(tmp_path))
    locations.check_location(str(tmp_path / "new" / "deeper"))
    assert list(tmp_path.iterdir()) == []


def test_check_location_names_the_parameter(tmp_path):
    """The error names the parameter it is checking for."""
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match=r"cache_dir: .* is a file"):
        locations.check_location(str(tmp_path / "f"), "cache_dir")
    with pytest.raises(ValueError, match=r"cache_dir: '/proc/x' is not writable"):
        locations.check_location("/proc/x", "cache_dir")


def test_bad_uri_is_a_clear_error():
    """A URI no pyarrow file system understands is an output_dir error, not a pyarrow one."""
    with pytest.raises(ValueError, match=r"output_dir: cannot open 'nosuch://bucket/x'"):
        locations.check_location("nosuch://bucket/x")


def test_child_keeps_a_uri_s_query_options_last():
    """Names join onto a URI's path; its query options (endpoint, region) stay at the end."""
    uri = "s3://bucket/runs?endpoint_override=127.0.0.1:9000&region=eu-west-1"
    assert locations.child(uri, ".staging", "h8.parquet") == (
        "s3://bucket/runs/.staging/h8.parquet?endpoint_override=127.0.0.1:9000&region=eu-west-1"
    )


def test_credentials_in_a_uri_are_refused_and_never_shown():
    """A URI holding user:secret@ is refused without echoing the secret; redact hides it too."""
    uri = "s3://AKIAEXAMPLE:topsecret@bucket/runs?secret_key=other&region=x"
    with pytest.raises(ValueError, match=r"output_dir: .* holds credentials.*environment") as error:
        locations.check_location(uri)
    assert "topsecret" not in str(error.value) and "AKIAEXAMPLE" not in str(error.value)
    shown = locations.redact(uri)
    assert "topsecret" not in shown and "other" not in shown and "region=x" in shown


def test_a_dangling_or_looping_link_is_refused(tmp_path):
    """An output location that is a link to nothing, or a loop of links, fails at validation."""
    (tmp_path / "dangling").symlink_to(tmp_path / "absent")
    (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")
    for name in ("dangling", "loop-a"):
        with pytest.raises(ValueError, match=r"output_dir: .* symbolic link to nothing"):
            locations.check_location(str(tmp_path / name))


def test_a_path_over_the_system_limits_is_refused(tmp_path):
    """A location too long for the file system fails at validation, not after training."""
    with pytest.raises(ValueError, match=r"output_dir: the folder name 'xxxx.*longer than"):
        locations.check_location(str(tmp_path / ("x" * 300)))
    deep = str(tmp_path / "/".join(["d" * 200] * 20))
    with pytest.raises(ValueError, match=r"output_dir: .* is too long"):
        locations.check_location(deep)


def test_a_location_that_never_answers_fails_within_the_timeout(monkeypatch):
    """An object store that accepts connections and never answers is refused in bounded time."""
    import socket
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts, never answers
    port = listener.getsockname()[1]
    monkeypatch.setattr(locations, "CHECK_TIMEOUT_SECONDS", 2.0)
    uri = f"s3://bucket/runs?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
    start = time.monotonic()
    try:
        with pytest.raises(ValueError, match=r"output_dir: 's3://bucket/runs\?.*' did not answer "
                                             r"within 2 s"):  # fmt: skip
            locations.check_location(uri)
    finally:
        listener.close()
    assert time.monotonic() - start < 10


def test_browser_urls_exist_only_for_public_object_stores():
    """S3 and GCS locations get a console address; local paths and custom endpoints get none."""
    assert locations.browser_url("s3://bucket/runs/r1") == (
        "https://s3.console.aws.amazon.com/s3/buckets/bucket?prefix=runs/r1/"
    )
    assert locations.browser_url("gs://bucket/runs/r1") == (
        "https://console.cloud.google.com/storage/browser/bucket/runs/r1"
    )
    assert locations.browser_url("/data/iris/r1") is None
    assert locations.browser_url("s3://b/r?endpoint_override=localhost:9000") is None


def test_a_location_inside_a_run_or_a_staging_folder_is_refused(tmp_path):
    """An output location inside another run's folder or a staging folder is refused."""
    run = tmp_path / "out" / "iris-sweep-20260101T000000Z-x"
    run.mkdir(parents=True)
    (run / "_run.json").write_text("{}")
    for inside in (run, run / "deeper", tmp_path / "out" / ".staging" / "y"):
        with pytest.raises(ValueError, match=r"output_dir: .* is inside .*, a run's folder or a "
                                             r"staging folder"):  # fmt: skip
            locations.check_location(str(inside))
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / ".staging").write_text("a file")
    with pytest.raises(ValueError, match=r"output_dir: .*\.staging' must be the folder where "
                                         r"runs are built, and it is a file"):  # fmt: skip
        locations.check_location(str(tmp_path / "plain"))


@pytest.mark.parametrize("uri", ["s3://SECRETKEY@bucket/runs", "gs://:token@bucket/runs"])
def test_any_user_part_in_a_uri_is_refused_by_validation_and_the_run_form(uri):
    """A URI with a user part and no password (`s3://KEY@bucket`) is refused, never echoed, both
    by validation and by the run form's schema, which the server checks before storing it."""
    import re

    from irismodel.parameters import NO_CREDENTIALS

    with pytest.raises(ValueError, match=r"output_dir: .* holds credentials") as error:
        locations.check_location(uri)
    assert "SECRETKEY" not in str(error.value) and "token" not in str(error.value)
    assert re.match(NO_CREDENTIALS, uri) is None
    assert re.match(NO_CREDENTIALS, "s3://bucket/runs?endpoint_override=a@b") is not None


@pytest.mark.subprocess  # chattr, where the tests run as root
def test_a_staging_folder_that_is_a_link_or_cannot_be_written_is_refused(tmp_path):
    """`.staging` as a symbolic link, or a staging folder that refuses writes, fails validation."""
    import shutil
    import subprocess

    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (out / ".staging").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match=r"output_dir: '.*/out/.staging' is a symbolic link"):
        locations.check_location(str(out))
    (out / ".staging").unlink()
    (out / ".staging").mkdir()
    if os.geteuid() != 0:
        (out / ".staging").chmod(0o555)
    elif (
        not shutil.which("chattr")
        or subprocess.run(["chattr", "+i", str(out / ".staging")], capture_output=True).returncode
    ):
        pytest.skip("root writes anywhere, and this file system has no immutable folders")
    try:
        with pytest.raises(ValueError, match=r"output_dir: .* is not writable .*/out/.staging"):
            locations.check_location(str(out))
    finally:
        subprocess.run(["chattr", "-i", str(out / ".staging")], capture_output=True)
        (out / ".staging").chmod(0o755)


def test_report_file_names_never_carry_a_uri_s_query_options():
    """The report's files are named after the run folder, without the URI's query string."""
    from irismodel.report import report_files, report_prefix

    uri = "s3://bucket/runs/iris-sweep-20260102T030405Z-abc/?endpoint_override=h:9000&scheme=http"
    assert locations.base_name(uri) == "iris-sweep-20260102T030405Z-abc"
    assert locations.base_name("/tmp/out/run/") == "run"
    prefix = report_prefix(uri)
    assert prefix == "_iris-sweep-20260102T030405Z-abc"
    assert report_files("s3://bucket/runs?scheme=http", prefix)["markdown"] == (
        "s3://bucket/runs/_iris-sweep-20260102T030405Z-abc.md?scheme=http"
    )
