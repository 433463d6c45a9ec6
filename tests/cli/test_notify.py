"""The failure notification set-up refuses bad input before it asks any server."""

import pytest

from cli.notify import check_webhook, main


def test_the_webhook_must_be_an_http_url() -> None:
    """A webhook that is not an http(s) URL with a host is refused, naming what is allowed."""
    assert check_webhook("https://hooks.example.com/x") == "https://hooks.example.com/x"
    with pytest.raises(ValueError, match="http:// or https:// URL with a host"):
        check_webhook("ftp://hooks.example.com/x")
    with pytest.raises(ValueError, match="with a host, not 'http:///x'"):
        check_webhook("http:///x")


def test_notify_refuses_a_silence_too_short(capsys) -> None:
    """--silent-after below 10 s is refused, exit 2, before the server is asked."""
    with pytest.raises(SystemExit, match="2"):
        main(["--webhook", "http://127.0.0.1:9/hook", "--silent-after", "5"])
    assert "--silent-after: 5 is too short; give 10 seconds or more" in capsys.readouterr().err


def test_notify_refuses_to_run_without_a_server(capsys) -> None:
    """With no PREFECT_API_URL (none is set in the tests), the set-up is refused, exit 2."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # the session's test server may be this process's API: not for this test
    with (
        temporary_settings(restore_defaults={PREFECT_API_URL}),
        pytest.raises(SystemExit, match="2"),
    ):
        main(["--webhook", "http://127.0.0.1:9/hook"])
    assert "PREFECT_API_URL is not set: point it at the server" in capsys.readouterr().err
