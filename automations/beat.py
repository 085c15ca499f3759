from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from .schedule import BEAT_SCHEDULE


def beat_schedule_sync(schedule: dict = BEAT_SCHEDULE) -> dict:
    """Make django-celery-beat's periodic tasks match `schedule`; remove the ones we
    declared earlier and no longer do (ours are those named in code, prefixed)."""
    prefix = "billing: "
    created = updated = 0
    with transaction.atomic():
        for name, entry in schedule.items():
            interval, _ = IntervalSchedule.objects.get_or_create(
                every=entry["every_seconds"], period=IntervalSchedule.SECONDS
            )
            _task, was_created = PeriodicTask.objects.update_or_create(
                name=prefix + name,
                defaults={"task": entry["task"], "interval": interval, "enabled": True},
            )
            created += was_created
            updated += not was_created
        stale = PeriodicTask.objects.filter(name__startswith=prefix).exclude(
            name__in=[prefix + name for name in schedule]
        )
        removed, _ = stale.delete()
    return {"created": created, "updated": updated, "removed": removed}
