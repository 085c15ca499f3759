from django.core.management.base import BaseCommand

from automations.beat import beat_schedule_sync


class Command(BaseCommand):
    help = "Sync the periodic tasks declared in automations/schedule.py to django-celery-beat."

    def handle(self, *args, **options):
        result = beat_schedule_sync()
        self.stdout.write(
            f"beat schedule: {result['created']} created, {result['updated']} updated, "
            f"{result['removed']} removed"
        )
