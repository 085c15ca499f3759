"""Settings screens with one row: the invoicing, billing and notification settings and
the branding.

A test clock's advance reads them at every stop, thousands of times in a simulation,
though nothing it does changes them: inside `singletons_held()` each is read once and
the same row is answered until the block ends or a save or delete of a settings row (or
of a row one of them points to, such as the default retry policy) makes it read again.
The row answered there is shared: read it, and save changes through the model as
everywhere (a queryset's update() sends no signal: not used on these rows in a held
block)."""

from contextlib import contextmanager
from contextvars import ContextVar

from django.db.models.signals import post_delete, post_save

_held: ContextVar[dict | None] = ContextVar("singletons_held", default=None)


class Singleton:
    """A model with one row (primary key 1), created with its defaults when first read.
    Its admin (customers.admin.SingletonAdmin) edits that row only."""

    @classmethod
    def load(cls):
        return held_read(cls, cls.load_row, watch=_pointed_to(cls) | {cls})

    @classmethod
    def load_row(cls):
        """The row, read from the database (created with its defaults if missing)."""
        row, _created = cls.objects.get_or_create(pk=1)
        return row


@contextmanager
def singletons_held():
    """Within the block, each settings row is read once (see the module's docstring).
    Nested blocks share the outer one's rows."""
    if _held.get() is not None:
        yield
        return
    token = _held.set({})
    try:
        yield
    finally:
        _held.reset(token)


def held_read(key, load, *, watch: set):
    """`load()`'s answer, read once in a singletons_held() block (and at every call
    outside one), read again after a save or delete of a row of a model in `watch`."""
    held = _held.get()
    if held is None:
        return load()
    if key not in held:
        _deletes_watched(watch)
        held[key] = (load(), frozenset(watch))
    return held[key][0]


def held_forget() -> None:
    """Read everything again: for a change made with a queryset's update(), which sends
    no signal."""
    held = _held.get()
    if held:
        held.clear()


def _forget(sender, **kwargs) -> None:
    held = _held.get()
    if not held:
        return
    for key in [key for key, (_value, watch) in held.items() if sender in watch]:
        del held[key]


def _pointed_to(model) -> set:
    if model not in _POINTED_TO:
        _POINTED_TO[model] = {field.related_model for field in model._meta.concrete_fields
                              if field.is_relation}
    return _POINTED_TO[model]


def _deletes_watched(models) -> None:
    """Listen to the deletes of `models` only: a post_delete receiver for every model
    would make every queryset's delete() read its rows first and send a signal a row
    (Django deletes in one statement only models nobody listens to)."""
    for model in models:
        if model not in _DELETE_WATCHED:
            post_delete.connect(_forget, sender=model, weak=False,
                                dispatch_uid=f"customers.singletons.forget_deleted:{model._meta.label}")
            _DELETE_WATCHED.add(model)


_POINTED_TO: dict = {}
_DELETE_WATCHED: set = set()
post_save.connect(_forget, dispatch_uid="customers.singletons.forget_saved")
