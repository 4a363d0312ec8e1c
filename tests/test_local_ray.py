"""The embedded Ray head: token auth end to end (or explicitly off), its own token whatever ``~/.ray`` holds,
jobs whose own ``ray.init()`` connects, and every listening socket on loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from genbench_tasks.launch.local_ray import LocalRayHead, _our_processes, start_ray_head, stop_ray_head
from genbench_tasks.launch.ray_jobs import RayJobError, RayJobLauncher, RayJobSpec
from genbench_tasks.pipeline.embedded import ray_connection
from genbench_tasks.pipeline.ray_operator import RayJobTrigger
from tests.fixtures.ray_cluster import unique_id

pytestmark = pytest.mark.integration

USER_TOKEN = "token-of-the-users-own-cluster-0123456789abcdef"
#: A job that is itself a Ray driver: it must find and authenticate to the cluster it runs on.
DRIVER = "import ray; ray.init(); print('ANSWER', ray.get(ray.remote(lambda: 41 + 1).remote()))"


def _command_line(proc: psutil.Process) -> str:
    """A process's command line, or "" for one that exited or is a zombie (Ray reaps its children lazily)."""
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def listening_addresses(pids: list[int]) -> dict[str, set[str]]:
    """``{"name[pid]": {"ip:port", ...}}`` of every TCP/UDP socket listening or bound in those processes."""
    found: dict[str, set[str]] = {}
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            conns = proc.net_connections(kind="inet")
            name = f"{proc.name()}[{pid}]"
        except psutil.Error:
            continue
        for c in conns:
            if c.status == psutil.CONN_LISTEN or (c.type == 2 and not c.raddr):  # TCP listen, unconnected UDP
                found.setdefault(name, set()).add(f"{c.laddr.ip}:{c.laddr.port}")
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.rsplit(":", 1)[0].strip("[]"))
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback  # ::ffff:127.0.0.1 counts as loopback


def non_loopback(listeners: dict[str, set[str]]) -> dict[str, set[str]]:
    bad = {name: {a for a in addrs if not is_loopback(a)} for name, addrs in listeners.items()}
    return {name: addrs for name, addrs in bad.items() if addrs}


def _get(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module", params=[True, False], ids=["auth", "no-auth"])
def head_with_user_token(request, tmp_path_factory) -> Iterator[tuple[LocalRayHead, Path]]:
    """A head started in a HOME whose ``~/.ray/auth_token`` holds another cluster's token."""
    home = tmp_path_factory.mktemp("home")
    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text(USER_TOKEN)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.delenv("RAY_AUTH_MODE", raising=False)
        head = start_ray_head(num_cpus=1, auth=request.param)
        try:
            yield head, home
        finally:
            stop_ray_head(head)


def test_head_keeps_its_own_auth_setting_whatever_the_user_token(head_with_user_token):
    head, home = head_with_user_token
    jobs = f"{head.address}/api/jobs/"
    if head.token:
        assert head.token != USER_TOKEN
        assert head.token_path.read_text() == head.token and head.token_path.stat().st_mode & 0o077 == 0
        assert head.temp_dir in head.token_path.parents  # private to this head, not ~/.ray
        assert _get(jobs) == 401
        assert _get(jobs, USER_TOKEN) == 403
        assert _get(jobs, head.token) == 200
    else:  # explicitly off: an existing ~/.ray/auth_token must not switch auth on
        assert _get(jobs) == 200
    assert (home / ".ray" / "auth_token").read_text() == USER_TOKEN  # the user's token untouched


def test_jobs_run_and_their_own_ray_init_connects(head_with_user_token):
    head, _ = head_with_user_token
    launcher = head.launcher()
    job_id = launcher.submit_or_attach(
        RayJobSpec(entrypoint=f'python -c "{DRIVER}"', submission_id=unique_id("drv"))
    )
    outcome = launcher.wait(job_id, timeout_s=180, poll_s=0.5, on_log=None)
    assert outcome.status == "SUCCEEDED", outcome.log_tail
    assert "ANSWER 42" in launcher.logs(job_id)


def test_clients_without_the_token_are_refused_with_a_clear_error(head_with_user_token):
    """With auth on, a client without the head's token, or with the user's own, is refused saying what to
    do; with auth off, the same client, which sends no token, is let in."""
    head, _ = head_with_user_token
    if not head.token:
        assert RayJobLauncher(head.address).attempts("anything") == {}
        return
    with pytest.raises(RayJobError, match="requires a token .*connection's password"):
        RayJobLauncher(head.address).attempts("anything")
    with pytest.raises(RayJobError, match="refused our token"):
        RayJobLauncher(head.address, token=USER_TOKEN).attempts("anything")


def test_trigger_reads_the_token_from_the_airflow_connection(head_with_user_token, monkeypatch):
    head, _ = head_with_user_token
    monkeypatch.setenv("AIRFLOW_CONN_GENBENCH_RAY", json.dumps(ray_connection(head.address, head.token)))
    job_id = head.launcher().submit_or_attach(
        RayJobSpec(entrypoint="python -c \"print('hello')\"", submission_id=unique_id("trg"))
    )
    trigger = RayJobTrigger(
        job_id=job_id, address=head.address, ray_conn_id="genbench_ray", poll_interval=0.3
    )

    async def first_event():
        async for event in trigger.run():
            return event.payload

    event = asyncio.run(asyncio.wait_for(first_event(), timeout=120))
    assert event["status"] == "SUCCEEDED"


def test_every_socket_of_the_head_is_on_loopback(head_with_user_token):
    head, _ = head_with_user_token
    pids = [p.pid for p in _our_processes(head.process.pid, head.temp_dir)]
    listeners = listening_addresses(pids)
    assert any(f":{head.address.rsplit(':', 1)[1]}" in a for addrs in listeners.values() for a in addrs), (
        "the dashboard's listener was not found: the check would pass vacuously"
    )
    assert non_loopback(listeners) == {}, listeners


def test_queued_jobs_wait_for_cpus_instead_of_failing_after_ray_default_900s(head_with_user_token):
    """A nightly submits every cell at once; jobs beyond the head's CPUs must queue, not time out."""
    from genbench_tasks.launch.local_ray import JOB_START_TIMEOUT_S

    head, _ = head_with_user_token
    dashboards = [
        p for p in _our_processes(head.process.pid, head.temp_dir) if "dashboard.py" in _command_line(p)
    ]
    assert dashboards, "the dashboard (job manager) process was not found"
    for proc in dashboards:
        assert proc.environ().get("RAY_JOB_START_TIMEOUT_SECONDS") == str(JOB_START_TIMEOUT_S)
