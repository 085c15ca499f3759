"""What a web process keeps of the invoice page between requests: the values last used,
by key, within a bound (rendered.PageStore, links.link_states, page.seen_views)."""

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable


class Kept:
    """The values last used, by key: at most `count` of them and, when `size_of` gives
    each value's size, `size` in all (thread-safe, for threaded servers)."""

    def __init__(self, count: int, size: int | None = None,
                 size_of: Callable[[object], int] | None = None):
        self.count, self.size, self._size_of = count, size, size_of
        self._values: OrderedDict = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable):
        with self._lock:
            value = self._values.get(key)
            if value is not None:
                self._values.move_to_end(key)
            return value

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._values

    def put(self, key: Hashable, value) -> None:
        with self._lock:
            if key in self._values:
                self._size -= self._sized(self._values.pop(key))
            self._values[key] = value
            self._size += self._sized(value)
            while len(self._values) > self.count or (
                self.size is not None and self._size > self.size
            ):
                _key, oldest = self._values.popitem(last=False)
                self._size -= self._sized(oldest)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._size = 0

    def _sized(self, value) -> int:
        return self._size_of(value) if self._size_of is not None else 0
