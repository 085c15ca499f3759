"""Which automation is acting right now, so the events its actions write never start it
again, and chains of automations stop at MAX_CHAIN_DEPTH."""

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass

from customers.actors import Actor

MAX_CHAIN_DEPTH = 3  # an automation's action may start others, 3 levels deep at most


@dataclass(frozen=True)
class Acting:
    automation_id: int
    depth: int


acting: ContextVar[Acting | None] = ContextVar("automation_acting", default=None)


@contextlib.contextmanager
def acting_as(automation_id: int, depth: int):
    token = acting.set(Acting(automation_id, depth))
    try:
        yield
    finally:
        acting.reset(token)


def automation_actor(name: str) -> Actor:
    return Actor.system(f"automation: {name}"[:150])
