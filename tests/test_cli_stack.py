"""`genbench demo` and `genbench up` refuse bad arguments with one line and exit 2, before starting anything,
and stop what they started on SIGTERM or Ctrl-C."""

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


STOPPED_BY_SIGNAL = """
import os, signal, sys, time
import genbench_tasks.pipeline.embedded as embedded
from genbench_tasks.cli import main

class Deployment:  # the stack's boundary, faked: start() is interrupted, stop() must still run
    def __init__(self, **kwargs):
        pass
    def start(self):
        print("started", flush=True)
        os.kill(os.getpid(), getattr(signal, sys.argv[2]))
        time.sleep(30)
        print("not interrupted", flush=True)
    def stop(self):
        print("stopped everything", flush=True)

embedded.LocalDeployment = Deployment
sys.exit(main([sys.argv[1], "--out", sys.argv[3]]))
"""


@pytest.mark.parametrize("command", ["demo", "up"])
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_signal_stops_what_the_command_started(tmp_path, command, signame):
    """``kill`` or Ctrl-C, also when started with SIGINT ignored (nohup, ``cmd &`` in a script): the command
    stops everything it started instead of leaving the Airflow stack and Ray running."""
    import signal

    result = subprocess.run(
        [sys.executable, "-c", STOPPED_BY_SIGNAL, command, signame, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert "started" in result.stdout and "not interrupted" not in result.stdout, result.stderr
    assert "stopped everything" in result.stdout
    assert result.returncode == (130 if command == "demo" else 0), result.stderr
