"""The staff groups and what each may do, applied by data migrations.

Not a migration itself (the loader skips modules starting with "_"): a later migration
that adds models calls `staff_groups_sync` again so the groups cover the new models.
"""

from django.contrib.auth.management import create_permissions

FINANCE_ADMIN = "Finance admin"
COLLECTIONS_AGENT = "Collections agent"
AUDITOR = "Auditor"

BILLING_APPS = ("customers", "invoices", "subscriptions", "automations")
# Finance admins also run the periodic schedule (django-celery-beat's models).
FINANCE_APPS = (*BILLING_APPS, "django_celery_beat")
# Collections agents read customers and invoices, record payments and issue/void
# credit notes; they never finalize, void or edit invoices, nor touch any settings.
COLLECTIONS_VIEW_APPS = ("customers", "invoices", "subscriptions")
COLLECTIONS_EXTRA = (
    ("invoices", "add_payment"),
    ("invoices", "add_creditnote"),
    ("invoices", "change_creditnote"),
    # They see what was emailed, and pause a customer's reminders (e.g. in dispute).
    ("automations", "view_outboxmessage"),
    ("automations", "view_customernotificationpreference"),
    ("automations", "add_customernotificationpreference"),
    ("automations", "change_customernotificationpreference"),
)


def permissions_ensure(apps, using):
    """Permissions are normally created after `migrate` ends; a fresh database reaches
    this migration before that, so create the ones the groups need now."""
    for label in FINANCE_APPS:
        try:
            app_config = apps.get_app_config(label)
        except LookupError:  # an app without models yet
            continue
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0, using=using)
        app_config.models_module = None


def staff_groups_sync(apps, schema_editor):
    using = schema_editor.connection.alias
    permissions_ensure(apps, using)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    on = Permission.objects.using(using)

    def in_apps(labels, codename_prefix=""):
        return set(
            on.filter(
                content_type__app_label__in=labels, codename__startswith=codename_prefix
            ).values_list("pk", flat=True)
        )

    collections = in_apps(COLLECTIONS_VIEW_APPS, "view_")
    for label, codename in COLLECTIONS_EXTRA:
        collections |= set(
            on.filter(content_type__app_label=label, codename=codename).values_list("pk", flat=True)
        )
    rules = {
        FINANCE_ADMIN: in_apps(FINANCE_APPS),
        COLLECTIONS_AGENT: collections,
        AUDITOR: in_apps(BILLING_APPS, "view_"),
    }
    for name, permission_ids in rules.items():
        group, _created = Group.objects.using(using).get_or_create(name=name)
        group.permissions.set(permission_ids)


def staff_groups_delete(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    names = [FINANCE_ADMIN, COLLECTIONS_AGENT, AUDITOR]
    Group.objects.using(schema_editor.connection.alias).filter(name__in=names).delete()
