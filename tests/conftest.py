import pytest

# Fixtures of the notification tests: an SMTP server, PDFs without the renderer.
pytest_plugins = ["tests.notify_support", "tests.browser"]


@pytest.fixture(autouse=True)
def _db_for_all(db):
    """Every test here works against the database."""


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("admin", "admin@example.com", "pw-admin-123")
