"""`genbench demo` and `genbench up` refuse bad arguments with one line and exit 2, before starting anything."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest


def genbench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "genbench_tasks.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "--seeds", "0"], "expected an integer >= 1"),
        (["demo", "--overrides", "[1]"], "must be a JSON object"),
        (["demo", "--overrides", "{oops"], "not valid JSON"),
        (["demo", "--profile", "no-such-profile"], "unknown profile"),
        (["demo", "--overrides", '{"ppo": {"no_such_key": 1}}'], "no_such_key"),
        (["up", "--port", "70000"], "between 0 and 65535"),
        (["up", "--ray-cpus", "0"], "expected an integer >= 1"),
    ],
)
def test_bad_arguments_fail_fast_with_one_line(args, message):
    result = genbench(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "starting Ray head" not in result.stderr  # nothing was started


def test_up_refuses_a_taken_port(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = genbench("up", "--out", str(tmp_path), "--port", str(port))
    assert result.returncode == 2, result.stderr
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr and "Traceback" not in result.stderr


def test_help_explains_the_stack():
    for command in ("demo", "up"):
        result = genbench(command, "--help")
        assert result.returncode == 0 and "127.0.0.1" in result.stdout
