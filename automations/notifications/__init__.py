"""Notifications: the outbox (emails written in the transaction of the change that
caused them, delivered by workers), the customer and staff emails, reminders, overdue
alerts and the daily digest."""
