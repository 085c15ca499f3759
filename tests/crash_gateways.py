"""Gateways for a child process of the reliability tests (named in its PAYMENT_GATEWAY):
the simulated gateway, with the worker dying or waiting at the worst moment of a payment.
"""

import os
import signal
import time
from pathlib import Path

from invoices.events import subscribe
from invoices.gateways.simulated import SimulatedGateway

from .processes import file_wait


def die() -> None:
    """What an OOM kill or a pulled plug does: no cleanup, no rollback by us, no goodbye."""
    os.kill(os.getpid(), signal.SIGKILL)


class KilledBeforeCharge(SimulatedGateway):
    """The worker dies after committing its pending attempts, before the gateway call."""

    def charge_many(self, items):
        die()


class KilledAfterCharge(SimulatedGateway):
    """The worker dies once the gateway has charged, before the outcomes are recorded."""

    def charge_many(self, items):
        super().charge_many(items)
        die()


class HeldAfterFirstCharge(SimulatedGateway):
    """The first batch is charged, then the worker waits, outcomes unrecorded, until the
    test releases it: the moment to pull Redis away. Signals are files in the directory
    named by RELIABILITY_SIGNALS: `charged` (written here) and `release` (by the test)."""

    def charge_many(self, items):
        outcomes = super().charge_many(items)
        signals = Path(os.environ["RELIABILITY_SIGNALS"])
        charged = signals / "charged"
        if not charged.exists():
            charged.write_text(str(len(items)))
            file_wait(signals / "release")
        return outcomes


class KilledWhileRecording(SimulatedGateway):
    """The worker dies inside the transaction recording the outcomes, after its rows are
    written and before COMMIT (an event subscriber runs there)."""

    def charge_many(self, items):
        outcomes = super().charge_many(items)
        subscribe(lambda events: die())
        return outcomes


class Timed(SimulatedGateway):
    """Charges as the simulated gateway does, each batch held a little at the gateway (as
    a real one takes time), and logs "pid start end count" per batch to the file named by
    CHARGE_LOG: when each process was charging, to show two of them at it together."""

    def charge_many(self, items):
        started = time.time()
        outcomes = super().charge_many(items)
        time.sleep(0.05)
        with open(os.environ["CHARGE_LOG"], "a") as log:
            log.write(f"{os.getpid()} {started} {time.time()} {len(items)}\n")
        return outcomes
