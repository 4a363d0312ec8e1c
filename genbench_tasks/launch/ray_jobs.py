"""Submit one (verl version x seed) training/eval job to a Ray cluster through the Ray Jobs API.

Idempotent by construction: a job has a deterministic submission id. ``submit_or_attach`` looks the id up
first and re-attaches to a running job, reports a finished one, or resubmits a failed/stopped one as
``<id>-try<n>`` with ``--resume`` appended to the entrypoint (same output dir, so the trainer continues
from its own last ``state/step_N``).

Ray is imported lazily: this module is imported by the Airflow operator/trigger, which must stay light.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from genbench_tasks.errors import GenbenchError
from genbench_tasks.verl import VERL_OWNED_ENV_VARS

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

log = logging.getLogger(__name__)

ACTIVE_STATUSES: frozenset[str] = frozenset({"PENDING", "RUNNING"})
TERMINAL_STATUSES: frozenset[str] = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
RESUME_ARG = "--resume"
_SUBMISSION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,200}$")
_TRY_SUFFIX_RE = re.compile(r"-try(\d+)$")
_VERSION_RE = re.compile(r"^[0-9][0-9A-Za-z.+\-]*$")

LogSink = Callable[[str], Any] | Callable[[str], Awaitable[Any]]


class RayJobConfigError(GenbenchError, ValueError):
    """A job spec or runtime_env that Ray or verl would reject (raised before anything is submitted)."""


class RayJobError(GenbenchError):
    """The Ray Jobs API refused a request, or a job ended badly."""


def auth_headers(token: str | None) -> dict[str, str]:
    """HTTP headers that authenticate to a Ray head with token auth (empty without a token)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def check_env_vars(env_vars: dict[str, str]) -> dict[str, str]:
    """Reject env vars some verl release sets itself (``genbench_tasks.verl.VERL_OWNED_ENV_VARS``: Ray fails on
    the duplicate keys); return ``env_vars`` unchanged (as ``str -> str``) otherwise."""
    clash = sorted(VERL_OWNED_ENV_VARS & set(env_vars))
    if clash:
        raise RayJobConfigError(
            f"runtime_env env_vars {clash} are set by verl itself (its ray.init runtime_env) "
            "and Ray fails on duplicate keys; remove them here and configure them through verl's config"
        )
    bad = [k for k, v in env_vars.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise RayJobConfigError(f"runtime_env env_vars must be str -> str; offending keys: {bad}")
    return dict(env_vars)


def runtime_env_for_verl(
    version: str, image_uri: str | None, env_vars: dict[str, str] | None = None
) -> dict[str, Any]:
    """A runtime_env running a job in the container image built for verl ``version`` (production: one
    image per verl version; the embedded default puts a cached install of a release on ``PYTHONPATH``
    instead, see ``verl.config.ensure_verl_env``)."""
    if not _VERSION_RE.match(version):
        raise RayJobConfigError(f"not a verl version: {version!r}")
    if not image_uri:
        raise RayJobConfigError(f"a verl job needs image_uri (the image built for verl {version})")
    env: dict[str, Any] = {"image_uri": image_uri}
    if env_vars:
        env["env_vars"] = check_env_vars(env_vars)
    return env


class RayJobSpec(BaseModel):
    """What to run. ``submission_id`` is deterministic (e.g. ``genbench-<run>-verl0_9_1-s3``)."""

    model_config = ConfigDict(extra="forbid")

    entrypoint: str = Field(min_length=1)
    submission_id: str
    runtime_env: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict)
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    #: Appended to the entrypoint when a failed/stopped attempt is resubmitted (None: never resume).
    resume_arg: str | None = RESUME_ARG
    #: Pass ``resume_arg`` even to a first attempt: the caller knows an earlier try ran (e.g. an Airflow retry)
    #: but the cluster has forgotten it (head restarted, job deleted). The trainer resumes only if it finds
    #: a checkpoint in its output dir.
    resume: bool = False

    @field_validator("submission_id")
    @classmethod
    def _valid_id(cls, v: str) -> str:
        if not _SUBMISSION_ID_RE.match(v):
            raise ValueError(f"submission_id {v!r} must match {_SUBMISSION_ID_RE.pattern}")
        if _TRY_SUFFIX_RE.search(v):
            raise ValueError(f"submission_id {v!r} must not end in -try<n> (reserved for retries)")
        return v

    @model_validator(mode="after")
    def _valid_env(self) -> RayJobSpec:
        env_vars = self.runtime_env.get("env_vars") or {}
        if not isinstance(env_vars, dict):
            raise ValueError("runtime_env['env_vars'] must be a dict")
        check_env_vars(env_vars)
        return self

    def entrypoint_for_attempt(self, attempt: int) -> str:
        """The entrypoint of attempt ``attempt`` (0 = first): retries get ``resume_arg`` appended."""
        if (
            (attempt == 0 and not self.resume)
            or not self.resume_arg
            or self.resume_arg in self.entrypoint.split()
        ):
            return self.entrypoint
        return f"{self.entrypoint} {self.resume_arg}"


class JobOutcome(BaseModel):
    """Where a job ended up (returned by :meth:`RayJobLauncher.wait`)."""

    job_id: str
    status: str
    message: str | None = None
    timed_out: bool = False
    elapsed_s: float = 0.0
    log_tail: list[str] = Field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"


def attempt_id(base_id: str, attempt: int) -> str:
    """Submission id of attempt ``attempt``: ``base`` for 0, ``base-try<n>`` after."""
    return base_id if attempt == 0 else f"{base_id}-try{attempt}"


def attempt_of(base_id: str, job_id: str) -> int | None:
    """Inverse of :func:`attempt_id` (None when ``job_id`` is not an attempt of ``base_id``)."""
    if job_id == base_id:
        return 0
    if job_id.startswith(base_id + "-try"):
        rest = job_id[len(base_id) + 4 :]
        if rest.isdigit() and not rest.startswith("0"):
            return int(rest)
    return None


class LogCursor:
    """Turns successive full-log snapshots (or appended chunks) into new complete lines."""

    def __init__(self) -> None:
        self.offset = 0  # chars of the full log already consumed
        self._partial = ""

    def from_snapshot(self, full: str) -> list[str]:
        """New complete lines given the job's whole log so far (``get_job_logs``)."""
        if len(full) < self.offset:  # log truncated/rotated: start over rather than lose lines
            self.offset, self._partial = 0, ""
        chunk, self.offset = full[self.offset :], len(full)
        return self.feed(chunk, advance=False)

    def feed(self, chunk: str, advance: bool = True) -> list[str]:
        """New complete lines given an appended chunk (``tail_job_logs``)."""
        if advance:
            self.offset += len(chunk)
        text = self._partial + chunk
        *lines, self._partial = text.split("\n")
        return lines

    def flush(self) -> list[str]:
        """The trailing line without a newline, if any."""
        rest, self._partial = self._partial, ""
        return [rest] if rest else []


def _status_str(status: Any) -> str:
    return str(getattr(status, "value", status))


def _is_not_found(exc: Exception) -> bool:
    text = str(exc)
    return "status code 404" in text or "does not exist" in text


def _is_duplicate(exc: Exception) -> bool:
    return "already exists" in str(exc)


def _no_agent_yet(exc: Exception) -> bool:
    return "No available agent to submit job" in str(exc)


async def _emit(sink: LogSink, line: str) -> None:
    res = sink(line)
    if inspect.isawaitable(res):
        await res


class RayJobLauncher:
    """Thin, idempotent wrapper over ``JobSubmissionClient`` (built lazily: its constructor does HTTP).

    ``token``: the cluster's auth token, sent as ``Authorization: Bearer``. Without one, Ray's own client
    rules apply (``RAY_AUTH_MODE=token`` with ``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH`` / ``~/.ray``).
    """

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        max_attempts: int = 20,
        headers: dict[str, str] | None = None,
        agent_wait_s: float = 60.0,
    ):
        if not address:
            raise RayJobConfigError("Ray Jobs API address is empty (expected e.g. http://127.0.0.1:8265)")
        self.address = address
        self.max_attempts = max_attempts
        self.agent_wait_s = agent_wait_s
        self._headers = {**(headers or {}), **auth_headers(token)} or None
        self._client: JobSubmissionClient | None = None

    @property
    def client(self) -> JobSubmissionClient:
        if self._client is None:
            from ray.exceptions import AuthenticationError
            from ray.job_submission import JobSubmissionClient

            try:
                self._client = JobSubmissionClient(self.address, headers=self._headers)
            except AuthenticationError as exc:
                why = "refused our token" if self._headers else "requires a token"
                raise RayJobError(
                    f"cannot reach the Ray Jobs API at {self.address}: the cluster {why} (give the token as "
                    "the Airflow connection's password, or set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN); "
                    f"Ray said: {str(exc).splitlines()[0]}"
                ) from None
            except (ConnectionError, RuntimeError) as exc:
                raise RayJobError(f"cannot reach the Ray Jobs API at {self.address}: {exc}") from exc
        return self._client

    # -- lookup ---------------------------------------------------------------------------------------------

    def info(self, job_id: str) -> Any | None:
        """``JobDetails`` of ``job_id``, or None if the cluster does not know it."""
        try:
            return self.client.get_job_info(job_id)
        except RuntimeError as exc:
            if _is_not_found(exc):
                return None
            raise

    def attempts(self, base_id: str) -> dict[int, Any]:
        """Known attempts of ``base_id`` on the cluster: ``{attempt number: JobDetails}``."""
        found: dict[int, Any] = {}
        for job in self.client.list_jobs():
            sid = getattr(job, "submission_id", None)
            n = attempt_of(base_id, sid) if sid else None
            if n is not None:
                found[n] = job
        return dict(sorted(found.items()))

    # -- submit ---------------------------------------------------------------------------------------------

    def submit_or_attach(self, spec: RayJobSpec) -> str:
        """Job id to follow for ``spec``: attach if active, done if succeeded, else (re)submit."""
        return self.submit_or_attach_detailed(spec)[0]

    def submit_or_attach_detailed(
        self, spec: RayJobSpec
    ) -> tuple[str, Literal["submitted", "attached", "succeeded", "resubmitted"]]:
        """Like :meth:`submit_or_attach`, also saying what was done."""
        base = spec.submission_id
        known = self.attempts(base)
        if not known:
            return self._submit(spec, 0, previous=None), "submitted"
        last_n = max(known)
        last_id = attempt_id(base, last_n)
        status = _status_str(known[last_n].status)
        if status in ACTIVE_STATUSES:
            log.info("Ray job %s is %s: attaching", last_id, status)
            return last_id, "attached"
        if status == "SUCCEEDED":
            log.info("Ray job %s already SUCCEEDED: nothing to submit", last_id)
            return last_id, "succeeded"
        log.info("Ray job %s ended %s: resubmitting with %s", last_id, status, spec.resume_arg)
        return self._submit(spec, last_n + 1, previous=last_id), "resubmitted"

    def _submit_job(self, **kwargs: Any) -> None:
        """``submit_job``, retried while the head has no job agent yet (a head that just started, or whose
        agent restarts, answers HTTP 500 "No available agent to submit job" for a few seconds)."""
        deadline = time.monotonic() + self.agent_wait_s
        while True:
            try:
                self.client.submit_job(**kwargs)
                return
            except RuntimeError as exc:
                if not _no_agent_yet(exc) or time.monotonic() >= deadline:
                    raise
                log.info("Ray head has no job agent yet; retrying the submission in 1 s")
                time.sleep(1.0)

    def _submit(self, spec: RayJobSpec, attempt: int, previous: str | None) -> str:
        # A concurrent submitter may win the race for an id: attach to it if it is alive, else move on.
        for n in range(attempt, self.max_attempts):
            job_id = attempt_id(spec.submission_id, n)
            metadata = {**spec.metadata, "genbench_base_id": spec.submission_id, "genbench_attempt": str(n)}
            if previous:
                metadata["genbench_resumed_from"] = previous
            try:
                self._submit_job(
                    entrypoint=spec.entrypoint_for_attempt(n),
                    submission_id=job_id,
                    runtime_env=spec.runtime_env or None,
                    metadata=metadata,
                    entrypoint_num_cpus=spec.entrypoint_num_cpus,
                    entrypoint_num_gpus=spec.entrypoint_num_gpus,
                )
            except RuntimeError as exc:
                if not _is_duplicate(exc):
                    raise RayJobError(f"Ray refused job {job_id}: {exc}") from exc
                existing = self.info(job_id)
                status = _status_str(existing.status) if existing is not None else "DELETED"
                if status in ACTIVE_STATUSES | {"SUCCEEDED"}:
                    log.info("Ray job %s was submitted concurrently (%s): attaching", job_id, status)
                    return job_id
                log.info("submission id %s is taken (%s): trying the next one", job_id, status)
                continue
            log.info("submitted Ray job %s (attempt %d): %s", job_id, n, spec.entrypoint_for_attempt(n))
            return job_id
        raise RayJobError(f"job {spec.submission_id} reached max_attempts={self.max_attempts}")

    # -- control --------------------------------------------------------------------------------------------

    def status(self, job_id: str) -> str:
        """``PENDING`` / ``RUNNING`` / ``SUCCEEDED`` / ``FAILED`` / ``STOPPED``."""
        return _status_str(self.client.get_job_status(job_id))

    def stop(self, job_id: str) -> bool:
        """Ask Ray to stop ``job_id``; False if it had already ended (or is unknown)."""
        try:
            stopped = bool(self.client.stop_job(job_id))
        except RuntimeError as exc:
            if _is_not_found(exc):
                return False
            raise
        log.warning("stop requested for Ray job %s (accepted=%s)", job_id, stopped)
        return stopped

    def logs(self, job_id: str) -> str:
        """The job's whole driver log so far."""
        return self.client.get_job_logs(job_id)

    async def tail(self, job_id: str, sink: LogSink, poll_s: float = 2.0) -> None:
        """Stream the job's log lines to ``sink`` until it ends (``tail_job_logs`` can drop the last line:
        the whole log is fetched at the end and what was missed is emitted too). If the websocket breaks
        (dashboard restart, proxy timeout) it falls back to polling ``get_job_logs``."""
        cursor = LogCursor()
        client = await asyncio.to_thread(lambda: self.client)  # the constructor does blocking HTTP
        try:
            async for chunk in client.tail_job_logs(job_id):
                for line in cursor.feed(chunk):
                    await _emit(sink, line)
        except Exception as exc:  # aiohttp/RuntimeError: keep following by polling
            log.warning("log stream of Ray job %s broke (%s): polling instead", job_id, exc)
            while (await asyncio.to_thread(self.status, job_id)) not in TERMINAL_STATUSES:
                for line in cursor.from_snapshot(await asyncio.to_thread(self.logs, job_id)):
                    await _emit(sink, line)
                await asyncio.sleep(poll_s)
        full = await asyncio.to_thread(self.logs, job_id)
        if len(full) >= cursor.offset:
            for line in cursor.from_snapshot(full) + cursor.flush():
                await _emit(sink, line)
        else:  # should not happen; keep what we have rather than replay
            for line in cursor.flush():
                await _emit(sink, line)

    def wait(
        self,
        job_id: str,
        timeout_s: float,
        poll_s: float = 2.0,
        on_log: Callable[[str], Any] | None = print,
        tail_lines: int = 50,
    ) -> JobOutcome:
        """Block until ``job_id`` ends, forwarding new log lines to ``on_log``.

        On timeout the job is stopped and the outcome has ``timed_out=True``; on KeyboardInterrupt the job
        is stopped and the interrupt re-raised.
        """
        t0 = time.monotonic()
        cursor = LogCursor()
        timed_out = False

        def pump() -> None:
            lines = cursor.from_snapshot(self.logs(job_id))
            if on_log is not None:
                for line in lines:
                    on_log(line)

        try:
            while True:
                status = self.status(job_id)
                pump()
                if status in TERMINAL_STATUSES:
                    break
                if time.monotonic() - t0 > timeout_s:
                    timed_out = True
                    log.warning("Ray job %s still %s after %.0fs: stopping it", job_id, status, timeout_s)
                    self.stop(job_id)
                    status = self._await_terminal(job_id, grace_s=30.0, poll_s=poll_s)
                    pump()
                    break
                time.sleep(poll_s)
        except KeyboardInterrupt:
            log.warning("interrupted: stopping Ray job %s", job_id)
            self.stop(job_id)
            raise
        if on_log is not None:
            for line in cursor.flush():
                on_log(line)
        info = self.info(job_id)
        return JobOutcome(
            job_id=job_id,
            status=status,
            message=getattr(info, "message", None),
            timed_out=timed_out,
            elapsed_s=round(time.monotonic() - t0, 3),
            log_tail=self.logs(job_id).splitlines()[-tail_lines:],
        )

    def _await_terminal(self, job_id: str, grace_s: float, poll_s: float) -> str:
        deadline = time.monotonic() + grace_s
        status = self.status(job_id)
        while status not in TERMINAL_STATUSES and time.monotonic() < deadline:
            time.sleep(min(poll_s, 1.0))
            status = self.status(job_id)
        return status
