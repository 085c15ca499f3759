"""What higher apps add to the demo data (`seed_demo`), without this app knowing them:
each registers `extra(now=...) -> str` in its AppConfig.ready(); seed_demo calls them in
its transaction, after its own data, and prints what they say."""

from collections.abc import Callable

_extras: list[Callable[..., str]] = []


def demo_extra(function: Callable[..., str]) -> Callable[..., str]:
    if function not in _extras:
        _extras.append(function)
    return function


def demo_extras_load(*, now) -> list[str]:
    return [extra(now=now) for extra in _extras]
