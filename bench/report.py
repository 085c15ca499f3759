"""Timing helpers and the summary printed at the end: one line per goal."""

import statistics
import time


def median_p95(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def timed(function) -> float:
    """Seconds one call takes."""
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


class Summary:
    def __init__(self):
        self.lines: list[tuple[bool, str]] = []

    def goal(self, ok: bool, text: str) -> None:
        self.lines.append((ok, text))

    def print(self) -> None:
        print("\nsummary")
        for ok, text in self.lines:
            print(f"  {'PASS' if ok else 'FAIL'}  {text}")
        failed = sum(not ok for ok, _text in self.lines)
        print(f"  {len(self.lines) - failed} goals met, {failed} missed")
