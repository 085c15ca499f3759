"""The periodic schedule, declared once in code and synced to django-celery-beat
(`manage.py sync_beat_schedule`, run by `make run` and on deploy). Beat only wakes the
sweeps; the database says what is due."""

BEAT_SCHEDULE = {
    "finalize due drafts": {"task": "invoices.finalize_due_drafts", "every_seconds": 60},
    "collect payments": {"task": "automations.collect_payments", "every_seconds": 60},
    "past due to uncollectible": {
        "task": "automations.mark_past_due_uncollectible", "every_seconds": 300,
    },
    "deliver emails": {"task": "notifications.outbox_deliver", "every_seconds": 60},
    "reminders, alerts and digest": {"task": "notifications.sweep", "every_seconds": 60},
    "automation runs": {"task": "automations.engine_sweep", "every_seconds": 30},
    "subscription renewals": {"task": "subscriptions.sweep", "every_seconds": 60},
    "render pending documents": {
        "task": "invoices.render_pending_documents", "every_seconds": 60,
    },
}
