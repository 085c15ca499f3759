"""Placeholder, filled in below."""


def run(summary, *, runs):
    print("changelist: not yet")
