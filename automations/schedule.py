"""The periodic schedule, declared once in code and synced to django-celery-beat
(`manage.py sync_beat_schedule`, run by `make run` and on deploy)."""

BEAT_SCHEDULE = {
    "finalize due drafts": {"task": "invoices.finalize_due_drafts", "every_seconds": 60},
    "deliver emails": {"task": "notifications.outbox_deliver", "every_seconds": 60},
    "reminders, alerts and digest": {"task": "notifications.sweep", "every_seconds": 60},
}
