"""Submit the app's commands to a Ray cluster through the Ray Job Submission API.

``python -m cluster submit [--address URL] [--wait] -- python -m tuning run --config ...``
ships this repository as the job's working directory (without .venv, runs/, .git) and passes
MLFLOW_TRACKING_URI / PVAE_* variables through, so the same command runs unchanged on the cluster.
``status``, ``logs`` (``--follow``), ``stop`` and ``list`` act on submitted jobs.

Authentication: clusters started by `ray start` use token authentication; run these commands with
``RAY_AUTH_MODE=token`` and the cluster's token in ``~/.ray/auth_token``, ``RAY_AUTH_TOKEN_PATH``
or ``RAY_AUTH_TOKEN`` (see cluster/README.md).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Never uploaded with the working directory (Ray's limit is 500 MiB; the venv alone is GBs).
EXCLUDES = [".venv", "runs", ".git", "data", "**/__pycache__", "*.pyc", ".pytest_cache"]
#: Environment variables forwarded to the job when set on the submitting machine.
FORWARD_ENV_PREFIXES = ("MLFLOW_", "PVAE_")
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def default_address() -> str:
    return os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS") or "http://127.0.0.1:8265"


def runtime_env(working_dir: str | os.PathLike = REPO, pip: str | None = None, env: dict | None = None) -> dict:
    """The runtime environment of a job: the app as working_dir, forwarded env vars, optional pip."""
    env_vars = {k: v for k, v in os.environ.items() if k.startswith(FORWARD_ENV_PREFIXES)}
    env_vars.update(env or {})
    renv = {"working_dir": str(working_dir), "excludes": EXCLUDES, "env_vars": env_vars}
    if pip:
        renv["pip"] = pip
    return renv


def client(address: str | None = None):
    from ray.job_submission import JobSubmissionClient
    return JobSubmissionClient(address or default_address())


def submit(entrypoint: list[str] | str, address: str | None = None, *, submission_id: str | None = None,
           working_dir=REPO, pip: str | None = None, env: dict | None = None) -> str:
    """Submit ``entrypoint`` (a command line) and return the submission id."""
    cmd = entrypoint if isinstance(entrypoint, str) else " ".join(entrypoint)
    return client(address).submit_job(entrypoint=cmd, submission_id=submission_id,
                                      runtime_env=runtime_env(working_dir, pip, env))


def wait(job_id: str, address: str | None = None, timeout: float = 3600, poll: float = 2.0) -> str:
    """Block until the job reaches a terminal state; return it ("SUCCEEDED", "FAILED", "STOPPED")."""
    c = client(address)
    deadline = time.monotonic() + timeout
    while True:
        status = str(c.get_job_status(job_id).value)
        if status in TERMINAL:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {status} after {timeout:.0f} s")
        time.sleep(poll)


def follow_logs(job_id: str, address: str | None = None) -> None:
    async def _tail():
        async for lines in client(address).tail_job_logs(job_id):
            print(lines, end="", flush=True)
    asyncio.run(_tail())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cluster", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="verb", required=True)
    s = sub.add_parser("submit", help="submit a command: python -m cluster submit [opts] -- CMD ...")
    s.add_argument("--address", default=None, help="dashboard URL (default $RAY_ADDRESS or http://127.0.0.1:8265)")
    s.add_argument("--submission-id", default=None)
    s.add_argument("--pip", default=None, help="requirements file to install on the workers (default: none, "
                   "the cluster image has the app's requirements)")
    s.add_argument("--no-wait", action="store_true", help="return after submission instead of following the logs")
    s.add_argument("cmd", nargs=argparse.REMAINDER, help="the command to run, after --")
    for verb, help_ in (("status", "print a job's status"), ("logs", "print a job's logs"), ("stop", "stop a job")):
        q = sub.add_parser(verb, help=help_)
        q.add_argument("job_id")
        q.add_argument("--address", default=None)
        if verb == "logs":
            q.add_argument("--follow", action="store_true")
    q = sub.add_parser("list", help="list jobs")
    q.add_argument("--address", default=None)
    args = p.parse_args(argv)

    if args.verb == "submit":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            p.error("submit needs a command after --, e.g. -- python -m tuning run --config configs/tune_smoke.yaml")
        job_id = submit(cmd, args.address, submission_id=args.submission_id, pip=args.pip)
        print(f"submitted {job_id} to {args.address or default_address()}")
        if args.no_wait:
            return 0
        follow_logs(job_id, args.address)
        status = wait(job_id, args.address)
        print(f"job {job_id}: {status}")
        return 0 if status == "SUCCEEDED" else 1
    c = client(args.address)
    if args.verb == "status":
        print(c.get_job_status(args.job_id).value)
    elif args.verb == "logs":
        if args.follow:
            follow_logs(args.job_id, args.address)
        else:
            print(c.get_job_logs(args.job_id), end="")
    elif args.verb == "stop":
        print("stopped" if c.stop_job(args.job_id) else "not running")
    elif args.verb == "list":
        for job in c.list_jobs():
            print(f"{job.submission_id}\t{job.status.value}\t{job.entrypoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
