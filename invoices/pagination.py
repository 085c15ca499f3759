"""A changelist paginator that never counts a whole large table.

COUNT(*) over a million invoices costs more than the page itself. We count at most
CAP + 1 rows (an index-only scan with a LIMIT); past that, the admin shows "more than
CAP" and the last pages are reached by narrowing the filters or the search.
"""

from django.core.paginator import Paginator
from django.utils.functional import cached_property

CAP = 10_000


class CappedCountPaginator(Paginator):
    @cached_property
    def count(self):
        try:
            capped = self.object_list.order_by().values("pk")[: CAP + 1]
            return capped.count()
        except (AttributeError, TypeError):
            return len(self.object_list)

    @property
    def is_capped(self) -> bool:
        return self.count > CAP
