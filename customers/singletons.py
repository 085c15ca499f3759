"""Settings screens with one row: the invoicing, billing and notification settings and
the branding."""


class Singleton:
    """A model with one row (primary key 1), created with its defaults when first read.
    Its admin (customers.admin.SingletonAdmin) edits that row only."""

    @classmethod
    def load(cls):
        row, _created = cls.objects.get_or_create(pk=1)
        return row
