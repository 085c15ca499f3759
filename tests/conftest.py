import pytest


@pytest.fixture(autouse=True)
def _db_for_all(db):
    """Every test here works against the database."""


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("admin", "admin@example.com", "pw-admin-123")
