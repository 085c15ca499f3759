"""A run-sweep worker as a real OS process, for tests/test_automation_runs_pg.py:
`python -m tests.automations.processes SWEEP_AT BATCH_SIZE [DIE_AFTER]` sets Django up on
DATABASE_URL, prints "ready", waits for "go", sweeps the due runs and prints its counts
as one JSON line. With DIE_AFTER it kills itself (os._exit, no cleanup, as a lost
machine) in the middle of a batch, once DIE_AFTER notes have been applied."""

import json
import os
import subprocess
import sys
from datetime import datetime

from tests.processes import Child, SweepWorker, child_env, release_together


def worker_main(sweep_at: str, batch_size: str, die_after: str = "") -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
    django.setup()
    from django.db import connection

    from automations.engine import steps
    from automations.engine.runs import runs_sweep

    if die_after:
        applied = []
        note = steps.STEPS["add_note"]

        def apply_then_die(context, params):
            applied.append(1)
            if len(applied) > int(die_after):
                os._exit(9)
            return note.apply(context, params)

        steps.STEPS["add_note"] = steps.StepKind(
            note.key, note.label, note.needs, note.validate, note.describe, apply_then_die)
    connection.ensure_connection()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit("no start signal")
    counts = runs_sweep(now=datetime.fromisoformat(sweep_at), batch_size=int(batch_size))
    print(json.dumps(counts), flush=True)


class RunsWorker(SweepWorker):
    def __init__(self, sweep_at: datetime, batch_size: int, die_after: int | None = None):
        args = [sys.executable, "-m", "tests.automations.processes", sweep_at.isoformat(),
                str(batch_size)] + ([str(die_after)] if die_after is not None else [])
        Child.__init__(self, args, child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def sweep_runs_together(sweep_at: datetime, batch_size: int, workers: int = 2,
                        die_after: int | None = None):
    return release_together([RunsWorker(sweep_at, batch_size, die_after if i == 0 else None)
                             for i in range(workers)])


if __name__ == "__main__":
    worker_main(*sys.argv[1:])
