"""What the admin's structured inputs post: rows of (key, value) under one field name."""

from django.utils.datastructures import MultiValueDict


def rows(name: str, pairs) -> dict:
    """The rows widget's data for `pairs` [(key, value), ...], as a browser posts it."""
    pairs = list(pairs.items()) if isinstance(pairs, dict) else list(pairs)
    return {f"{name}_key": [k for k, _v in pairs], f"{name}_value": [v for _k, v in pairs]}


def form_data(data: dict) -> MultiValueDict:
    """A dict whose list values post as repeated fields (the test client does that too)."""
    return MultiValueDict({k: v if isinstance(v, list) else [v] for k, v in data.items()})
