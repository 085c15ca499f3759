"""Real OS processes for the reliability tests (tests/test_reliability_pg.py).

A sweep worker is `python -m tests.processes SWEEP_AT ROUNDS`: it sets Django up against
the database in DATABASE_URL (the test database), connects, prints "ready", waits for
"go" on stdin (a start line shared by every worker of a test), runs the collection sweep
ROUNDS times at SWEEP_AT (SWEEP_BATCH_SIZE invoices a claim, when set) and prints its
counts as one JSON line. An outbox drainer (`drain DRAIN_AT`), a private redis-server
and a real Celery worker are started the same way. tests/crash_gateways.py holds the
gateways a child is given (PAYMENT_GATEWAY) to die or wait at the worst moment.
"""

import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
# Processes are given this long to start, answer or finish: far more than they need,
# so a slow CI machine is not a failure, and a hang still ends the test.
PATIENCE = 60


def file_wait(path: Path, timeout: float = PATIENCE) -> None:
    """Wait for another process to write `path` (how the processes here signal)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)


# --- the worker's side -----------------------------------------------------------------


def worker_main(sweep_at: str, rounds: str) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
    django.setup()
    from django.db import connection

    from automations import sweeps

    now = datetime.fromisoformat(sweep_at)
    connection.ensure_connection()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit("no start signal")
    # The tests' smaller batches make two workers' claims interleave on a few hundred rows.
    size = int(os.environ["SWEEP_BATCH_SIZE"]) if os.environ.get("SWEEP_BATCH_SIZE") else None
    totals = Counter()
    for _round in range(int(rounds)):
        totals.update(sweeps.collect_payments(now=now, batch_size=size))
    print(json.dumps(dict(totals)), flush=True)


def drainer_main(drain_at: str) -> None:
    """`python -m tests.processes drain DRAIN_AT`: an outbox worker (EMAIL_URL: the test's
    SMTP server) that drains what is due at DRAIN_AT once released, and prints its counts."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
    django.setup()
    from django.db import connection

    from automations.notifications.delivery import outbox_drain

    connection.ensure_connection()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit("no start signal")
    print(json.dumps(outbox_drain(now=datetime.fromisoformat(drain_at))), flush=True)


# --- the test's side ---------------------------------------------------------------------


def tests_database_url() -> str:
    """The URL of the database the tests run on (test_<name>, per xdist worker)."""
    from django.db import connection

    db = connection.settings_dict
    user = quote(db["USER"] or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    host = db["HOST"] or "localhost"
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{user}{password}@{host}{port}/{quote(db['NAME'], safe='')}"


def child_env(**extra: str) -> dict:
    """The environment of a child process: this one's, on the test database, with an
    in-memory broker unless given one: the wake-ups it sends after commit (outbox
    delivery, documents) go nowhere, as when the broker is down."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("REDIS_URL", "CELERY_BROKER_URL", "PAYMENT_GATEWAY")}
    env.update(DATABASE_URL=tests_database_url(), DJANGO_SETTINGS_MODULE="billing_site.settings",
               PYTHONUNBUFFERED="1", CELERY_BROKER_URL="memory://")
    env.update(extra)
    return env


class Child:
    """A child process whose stderr goes to a file (read on failure), never to a pipe that
    could fill up and block it, and whose files (VAR_DIR: media, broker folders) go to a
    directory of its own, removed when it stops, never to the project's var/."""

    def __init__(self, args: list[str], env: dict, stdin=None, stdout=None):
        self.log = tempfile.TemporaryFile(mode="w+")
        self.workdir = tempfile.TemporaryDirectory(prefix="billing-child-")
        self.process = subprocess.Popen(
            args, cwd=BASE_DIR, env={**env, "VAR_DIR": self.workdir.name}, stdin=stdin,
            stdout=stdout, stderr=self.log, text=True,
        )

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()[-4000:]

    def stop(self) -> None:
        """Kill it if still running (a failed test) and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=PATIENCE)
        self.log.close()
        self.workdir.cleanup()


class SweepWorker(Child):
    def __init__(self, sweep_at: datetime, rounds: int = 1, **env: str):
        super().__init__(
            [sys.executable, "-m", "tests.processes", sweep_at.isoformat(), str(rounds)],
            child_env(**env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )

    def wait_ready(self) -> None:
        ready, _w, _x = select.select([self.process.stdout], [], [], PATIENCE)
        line = self.process.stdout.readline() if ready else ""
        assert line.strip() == "ready", f"worker did not start: {line!r}\n{self.stderr()}"

    def go(self) -> None:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def result(self) -> tuple[int, dict | None]:
        """(exit status, the counts it printed, or None if it died before)."""
        out, _err = self.process.communicate(timeout=PATIENCE)
        lines = out.strip().splitlines()
        return self.process.returncode, json.loads(lines[-1]) if lines else None


class OutboxDrainer(SweepWorker):
    """`python -m tests.processes drain DRAIN_AT`: drains the outbox once released."""

    def __init__(self, drain_at: datetime, **env: str):
        Child.__init__(
            self, [sys.executable, "-m", "tests.processes", "drain", drain_at.isoformat()],
            child_env(**env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )


def sweep_together(sweep_at: datetime, workers: int = 2, rounds: int = 1, **env: str):
    """Start the workers, wait until each is connected, release them at once. Returns
    each one's (exit status, counts printed or None, the end of its stderr)."""
    return release_together([SweepWorker(sweep_at, rounds, **env) for _ in range(workers)])


def release_together(started: list) -> list:
    """Wait until each started worker is connected, release them at once, and return
    each one's (exit status, counts printed or None, the end of its stderr)."""
    try:
        for worker in started:
            worker.wait_ready()
        for worker in started:
            worker.go()
        return [(*worker.result(), worker.stderr()) for worker in started]
    finally:
        for worker in started:
            worker.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer(Child):
    """A private, throw-away redis-server: no persistence, so killing it loses every
    message it held, as the worst Redis outage would."""

    def __init__(self, port: int, workdir: Path):
        super().__init__(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir), "--protected-mode", "no"],
            dict(os.environ), stdout=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{port}/0"
        self.wait_ready()

    def wait_ready(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert self.process.poll() is None, f"redis-server exited:\n{self.stderr()}"
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
            finally:
                client.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=PATIENCE)


class CeleryWorker(Child):
    """`celery worker` as production runs it, one task at a time, on the test database."""

    def __init__(self, broker_url: str, **env: str):
        super().__init__(
            [sys.executable, "-m", "celery", "-A", "billing_site", "worker", "--pool=solo",
             "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "info"],
            child_env(CELERY_BROKER_URL=broker_url, **env), stdout=subprocess.DEVNULL,
        )


if __name__ == "__main__":
    if sys.argv[1] == "drain":
        drainer_main(*sys.argv[2:])
    else:
        worker_main(*sys.argv[1:])
