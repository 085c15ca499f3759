from .notifications.models import (  # noqa: F401
    CustomerNotificationPreference,
    EmailTemplate,
    NotificationSchedule,
    NotificationSettings,
    OutboxMessage,
)
