"""A changelist paginator for large tables: no full count, and deep pages read ids first.

COUNT(*) over a million invoices costs more than the page itself. We count at most
CAP + 1 rows (on PostgreSQL selecting no column, so an index can answer alone);
past that, the admin shows "more than CAP" and the last pages are reached by narrowing
the filters or the search.

A page is fetched in one query whose subquery chooses the page's ids: the OFFSET then
skips ids in an index instead of whole rows, and only the page's rows are read. When the
count says the matches are few (at most CAP), the subquery collects them first and sorts
them: walking the list's order index could otherwise read most of the table to find a
few matches that all sit far from its start (old invoices of one customer), which the
planner cannot foresee (a number prefix search, page 50: 440 ms walking, 20 ms collected).
"""

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import F, Value
from django.db.models.expressions import RawSQL
from django.utils.functional import cached_property

CAP = 10_000


class CappedCountPaginator(Paginator):
    @cached_property
    def count(self):
        rows = self.object_list
        if not hasattr(rows, "query"):  # a list
            return len(rows)
        if connections[rows.db].vendor == "postgresql":
            # No column selected (Django writes an empty select list for a constant):
            # any index the filters use can answer, not only one that holds the id.
            matches = rows.order_by().values(one=Value(1))
        else:  # SQLite refuses an empty select list
            matches = rows.order_by().values("pk")
        return matches[: CAP + 1].count()

    @property
    def is_capped(self) -> bool:
        return self.count > CAP

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        return self._get_page(self._rows(bottom, top), number, self)

    def _rows(self, bottom, top):
        rows = self.object_list
        if not hasattr(rows, "query"):  # a list
            return rows[bottom:top]
        window = self._sorted_matches(bottom, top) if self.count <= CAP else None
        if window is None:
            window = rows.values("pk")[bottom:top]
        return rows.filter(pk__in=window)

    def _sorted_matches(self, bottom, top):
        """The ids of rows bottom..top: all matches collected (at most CAP), then sorted.
        None when the order is not plain field names (then the ordered subquery serves)."""
        rows = self.object_list
        ordering = rows.query.order_by or rows.model._meta.ordering
        if not ordering or not all(isinstance(name, str) and name != "?" for name in ordering):
            return None
        keys = {f"key{index}": F(name.lstrip("-")) for index, name in enumerate(ordering)}
        matches = rows.order_by().values(key_pk=F("pk"), **keys)[: CAP + 1]
        connection = connections[rows.db]
        sql, params = matches.query.get_compiler(connection=connection).as_sql()
        quote = connection.ops.quote_name
        order = ", ".join(
            f"{quote(key)} {'DESC' if name.startswith('-') else 'ASC'}"
            for key, name in zip(keys, ordering, strict=True)
        )
        limit = connection.ops.limit_offset_sql(bottom, top)
        return RawSQL(
            f"SELECT {quote('key_pk')} FROM ({sql}) {quote('matches')} ORDER BY {order} {limit}",
            params,
        )
