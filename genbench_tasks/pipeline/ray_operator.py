"""Airflow 3 deferrable operator + trigger running one Ray job (a verl version x seed training run).

``RayJobOperator.execute`` submits or re-attaches (see :class:`~genbench_tasks.launch.ray_jobs.RayJobLauncher`)
then defers to :class:`RayJobTrigger`, which polls the job from the triggerer, streams its new log lines into
the task log and enforces the job deadline itself: on deadline it stops the Ray job and fires a timeout event
(``defer(timeout=...)`` is only a backstop, set a little later: on that timeout Airflow raises
``TaskDeferralTimeout`` without calling back, and the Ray job would keep running).

Authentication: the Airflow connection (default ``genbench_ray``) gives the dashboard address (host, port,
optional scheme) and, for a cluster with token auth, the token in its **password** field. The operator and
the trigger each read the connection themselves (the token is never serialized into trigger kwargs); with an
explicit ``address`` and no connection, Ray's own client rules apply (``RAY_AUTH_MODE=token`` plus
``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``). Clusters without auth need no password.

Both classes live in the installed package because the triggerer does not load DAG-folder code. Ray is
imported lazily (only when a client is built).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseHook, BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from genbench_tasks.launch.ray_jobs import (
    RESUME_ARG,
    TERMINAL_STATUSES,
    LogCursor,
    RayJobConfigError,
    RayJobLauncher,
    RayJobSpec,
)

DEFAULT_CONN_ID = "genbench_ray"
#: Extra time the Airflow-level deferral timeout gives the trigger to stop the job and report.
DEFER_TIMEOUT_MARGIN_S = 120.0
_EVENT_TAIL_LINES = 30
_EVENT_LINE_CHARS = 400


def ray_address_from_connection(conn: Any) -> str:
    """``http(s)://host:port`` of the Ray dashboard from an Airflow connection (host may carry a scheme)."""
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        raise AirflowException(f"connection {conn.conn_id!r} has no host (expected the Ray dashboard host)")
    if "://" not in host:
        extra = conn.extra_dejson or {}
        scheme = extra.get("scheme") or (conn.conn_type if conn.conn_type in ("http", "https") else "http")
        host = f"{scheme}://{host}"
    return f"{host}:{conn.port}" if conn.port else host


def ray_token_from_connection(conn: Any) -> str | None:
    """The Ray auth token kept in the connection's password field (None: the cluster has no auth)."""
    return (conn.password or "").strip() or None


def resolve_ray_endpoint(address: str | None, conn_id: str | None) -> tuple[str, str | None]:
    """``(address, token)``: an explicit address wins (token from Ray's env rules), else the connection."""
    if address:
        return address.rstrip("/"), None
    if not conn_id:
        raise AirflowException("give either a Ray address or a connection id")
    conn = BaseHook.get_connection(conn_id)
    return ray_address_from_connection(conn), ray_token_from_connection(conn)


def _short_tail(lines: Sequence[str], n: int = _EVENT_TAIL_LINES) -> list[str]:
    return [line[:_EVENT_LINE_CHARS] for line in lines[-n:]]


class RayJobTrigger(BaseTrigger):
    """Polls one Ray job until it ends or ``deadline`` (epoch seconds) passes; streams its log lines.

    Events: ``{"job_id", "status", "message", "log_tail"}`` where status is a Ray terminal status,
    ``"TIMEOUT"`` (the job was stopped at the deadline; ``job_status`` says where it ended) or ``"ERROR"``
    (the Jobs API was unreachable ``max_api_errors`` polls in a row).
    """

    def __init__(
        self,
        job_id: str,
        address: str,
        ray_conn_id: str | None = None,
        deadline: float | None = None,
        poll_interval: float = 10.0,
        stop_grace_s: float = 60.0,
        max_api_errors: int = 6,
        stream_logs: bool = True,
    ):
        super().__init__()
        self.job_id = job_id
        self.address = address
        self.ray_conn_id = ray_conn_id
        self.deadline = deadline
        self.poll_interval = poll_interval
        self.stop_grace_s = stop_grace_s
        self.max_api_errors = max_api_errors
        self.stream_logs = stream_logs
        self._launcher: RayJobLauncher | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_id": self.job_id,
                "address": self.address,
                "ray_conn_id": self.ray_conn_id,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "stop_grace_s": self.stop_grace_s,
                "max_api_errors": self.max_api_errors,
                "stream_logs": self.stream_logs,
            },
        )

    @property
    def launcher(self) -> RayJobLauncher:
        if self._launcher is None:
            self._launcher = RayJobLauncher(self.address)
        return self._launcher

    async def _connect(self) -> None:
        """Build the launcher with the connection's token, read here in the triggerer."""
        if self._launcher is not None or not self.ray_conn_id:
            return
        conn = await BaseHook.aget_connection(self.ray_conn_id)
        self._launcher = RayJobLauncher(self.address, token=ray_token_from_connection(conn))

    async def _call(self, fn: Any, *args: Any) -> Any:
        # The Jobs client is synchronous (requests): keep the triggerer's event loop free.
        return await asyncio.to_thread(fn, *args)

    async def _pump(self, cursor: LogCursor) -> list[str]:
        text = await self._call(self.launcher.logs, self.job_id)
        lines = cursor.from_snapshot(text)
        if self.stream_logs:
            for line in lines:
                self.log.info("[%s] %s", self.job_id, line)
        return text.splitlines()

    async def _event(self, status: str, lines: list[str], **extra: Any) -> TriggerEvent:
        info = None
        try:
            info = await self._call(self.launcher.info, self.job_id)
        except Exception as exc:  # the event matters more than the message
            self.log.warning("could not read job info of %s: %s", self.job_id, exc)
        return TriggerEvent(
            {
                "job_id": self.job_id,
                "status": status,
                "message": getattr(info, "message", None),
                "log_tail": _short_tail(lines),
                **extra,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        cursor = LogCursor()
        lines: list[str] = []
        errors = 0
        self.log.info("following Ray job %s at %s (deadline %s)", self.job_id, self.address, self.deadline)
        while True:
            try:
                await self._connect()
                status = await self._call(self.launcher.status, self.job_id)
                lines = await self._pump(cursor)
                errors = 0
            except Exception as exc:
                errors += 1
                self.log.warning("Ray Jobs API error %d/%d: %s", errors, self.max_api_errors, exc)
                if errors >= self.max_api_errors:
                    yield await self._event("ERROR", lines, error=str(exc)[:2000])
                    return
                await asyncio.sleep(self.poll_interval)
                continue
            if status in TERMINAL_STATUSES:
                for line in cursor.flush() if self.stream_logs else []:
                    self.log.info("[%s] %s", self.job_id, line)
                self.log.info("Ray job %s ended: %s", self.job_id, status)
                yield await self._event(status, lines)
                return
            if self.deadline is not None and time.time() >= self.deadline:
                self.log.warning("Ray job %s still %s at its deadline: stopping it", self.job_id, status)
                job_status = await self._stop_and_settle()
                lines = await self._pump(cursor)
                yield await self._event("TIMEOUT", lines, job_status=job_status)
                return
            await asyncio.sleep(self.poll_interval)

    async def _stop_and_settle(self) -> str:
        """Stop the job and wait (bounded) until Ray reports it terminal; return its last status."""
        await self._call(self.launcher.stop, self.job_id)
        until = time.monotonic() + self.stop_grace_s
        status = await self._call(self.launcher.status, self.job_id)
        while status not in TERMINAL_STATUSES and time.monotonic() < until:
            await asyncio.sleep(min(self.poll_interval, 1.0))
            status = await self._call(self.launcher.status, self.job_id)
        return status

    async def on_kill(self) -> None:
        """A user marked/cleared the deferred task: stop the Ray job (bounded wait)."""
        self.log.warning("task killed while deferred: stopping Ray job %s", self.job_id)
        try:
            await asyncio.wait_for(self._connect(), timeout=30)
            await asyncio.wait_for(self._call(self.launcher.stop, self.job_id), timeout=30)
        except Exception as exc:
            self.log.warning("could not stop Ray job %s: %s", self.job_id, exc)


class RayJobOperator(BaseOperator):
    """Run one Ray job idempotently: submit, or attach to the active/finished attempt, or resubmit a failed
    one as ``<id>-try<n>`` with ``resume_arg`` (continues from the trainer's last checkpoint).

    Returns (XCom) ``{"job_id": ..., "status": "SUCCEEDED", "address": ...}``; raises with the job's last log
    lines when it fails, is stopped, or exceeds ``job_timeout``.
    """

    template_fields: Sequence[str] = ("entrypoint", "submission_id", "runtime_env", "metadata", "address")
    template_fields_renderers = {"runtime_env": "json", "metadata": "json"}
    ui_color = "#cfe8ff"

    def __init__(
        self,
        *,
        entrypoint: str,
        submission_id: str,
        runtime_env: dict[str, Any] | None = None,
        metadata: dict[str, str] | None = None,
        entrypoint_num_cpus: float | None = None,
        entrypoint_num_gpus: float | None = None,
        resume_arg: str | None = RESUME_ARG,
        ray_conn_id: str | None = DEFAULT_CONN_ID,
        address: str | None = None,
        job_timeout: timedelta | float = timedelta(hours=6),
        poll_interval: float = 10.0,
        stop_grace_s: float = 60.0,
        deferrable: bool = True,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.entrypoint = entrypoint
        self.submission_id = submission_id
        self.runtime_env = runtime_env or {}
        self.metadata = metadata or {}
        self.entrypoint_num_cpus = entrypoint_num_cpus
        self.entrypoint_num_gpus = entrypoint_num_gpus
        self.resume_arg = resume_arg
        self.ray_conn_id = ray_conn_id
        self.address = address
        self.job_timeout_s = (
            job_timeout.total_seconds() if isinstance(job_timeout, timedelta) else float(job_timeout)
        )
        self.poll_interval = poll_interval
        self.stop_grace_s = stop_grace_s
        self.deferrable = deferrable
        self._job_id: str | None = None
        self._launcher: RayJobLauncher | None = None

    def build_spec(self, resume: bool = False) -> RayJobSpec:
        """The validated job spec; a bad spec fails the task without retries (retrying cannot fix it)."""
        from pydantic import ValidationError

        try:
            return RayJobSpec(
                entrypoint=self.entrypoint,
                submission_id=self.submission_id,
                runtime_env=self.runtime_env,
                metadata={str(k): str(v) for k, v in self.metadata.items()},
                entrypoint_num_cpus=self.entrypoint_num_cpus,
                entrypoint_num_gpus=self.entrypoint_num_gpus,
                resume_arg=self.resume_arg,
                resume=resume,
            )
        except (ValidationError, RayJobConfigError) as exc:
            raise AirflowFailException(f"invalid Ray job spec for {self.submission_id!r}: {exc}") from exc

    def _endpoint(self) -> tuple[str, str | None]:
        return resolve_ray_endpoint(self.address, self.ray_conn_id)

    def execute(self, context: Any) -> dict[str, Any]:
        # An Airflow retry resumes even if the cluster forgot the earlier attempt (head restart, deleted job).
        ti = context.get("ti") if isinstance(context, dict) or hasattr(context, "get") else None
        spec = self.build_spec(resume=int(getattr(ti, "try_number", 1) or 1) > 1)
        address, token = self._endpoint()
        self._launcher = launcher = RayJobLauncher(address, token=token)
        job_id, action = launcher.submit_or_attach_detailed(spec)
        self._job_id = job_id
        self.log.info("Ray job %s (%s) at %s", job_id, action, address)
        status = launcher.status(job_id)
        if status in TERMINAL_STATUSES:
            lines = launcher.logs(job_id).splitlines()
            info = launcher.info(job_id)
            event = {"job_id": job_id, "status": status, "message": getattr(info, "message", None)}
            return self._finish({**event, "log_tail": _short_tail(lines)}, address)
        if not self.deferrable:
            outcome = launcher.wait(job_id, self.job_timeout_s, self.poll_interval, on_log=self.log.info)
            status = "TIMEOUT" if outcome.timed_out else outcome.status
            event = {"job_id": job_id, "status": status, "message": outcome.message}
            return self._finish({**event, "log_tail": _short_tail(outcome.log_tail)}, address)
        trigger = RayJobTrigger(
            job_id=job_id,
            address=address,
            ray_conn_id=None if self.address else self.ray_conn_id,
            deadline=time.time() + self.job_timeout_s,
            poll_interval=self.poll_interval,
            stop_grace_s=self.stop_grace_s,
        )
        self.defer(
            trigger=trigger,
            method_name="execute_complete",
            kwargs={"address": address},
            timeout=timedelta(seconds=self.job_timeout_s + self.stop_grace_s + DEFER_TIMEOUT_MARGIN_S),
        )

    def execute_complete(
        self, context: Any, event: dict[str, Any] | None = None, address: str = ""
    ) -> dict[str, Any]:
        if not event:
            raise AirflowException("Ray job trigger fired without an event")
        self._job_id = event.get("job_id")
        return self._finish(event, address)

    def _finish(self, event: dict[str, Any], address: str) -> dict[str, Any]:
        job_id, status = event.get("job_id"), event.get("status")
        if status == "SUCCEEDED":
            self.log.info("Ray job %s SUCCEEDED", job_id)
            return {"job_id": job_id, "status": status, "address": address}
        tail = "\n".join(event.get("log_tail") or [])
        what = {
            "TIMEOUT": f"exceeded job_timeout={self.job_timeout_s:.0f}s and was stopped "
            f"(ended {event.get('job_status')})",
            "ERROR": f"could not be followed: {event.get('error')}",
        }.get(str(status), f"ended {status}")
        raise AirflowException(
            f"Ray job {job_id} {what}: {event.get('message') or ''}\n--- last log lines ---\n{tail}"
        )

    def on_kill(self) -> None:
        """Task killed while running (not deferred): stop the Ray job it was following."""
        if self._job_id and self._launcher is not None:
            self.log.warning("task killed: stopping Ray job %s", self._job_id)
            try:
                self._launcher.stop(self._job_id)
            except Exception as exc:
                self.log.warning("could not stop Ray job %s: %s", self._job_id, exc)
