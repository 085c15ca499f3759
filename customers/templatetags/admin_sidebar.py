"""The admin sidebar's list of apps and models, written in Python.

The theme's admin/app_list.html renders on every admin page, for each of the ~30 models:
two URL-encodings of the request's path, two lowercasings, lookups of keys the entries
do not have; a quarter of a 20-row invoice list's CPU (11 ms of 46). This writes the same
markup (tests/test_admin_fast_list.py compares the two) once per page, in a loop.
"""

from urllib.parse import quote

from django import template
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext

register = template.Library()

APP_LINK_CLASSES = (
    "block font-semibold mb-2 mt-4 text-font-important-light text-sm truncate "
    "dark:text-font-important-dark"
)
MODEL_LINK_CLASSES = (
    "flex items-center h-[38px] -mx-3 px-3 rounded-default truncate hover:text-primary-600 "
    "dark:hover:text-primary-500 "
)
MODEL_LINK_ACTIVE = (
    "bg-base-100 font-semibold text-primary-600 dark:bg-white/[.06] dark:text-primary-500 "
    "active"
)


@register.simple_tag
def sidebar_app_list(app_list, request):
    """The inside of the theme's <div id="nav-sidebar-apps"> for a non-empty app_list."""
    path = request.path
    encoded_path = quote(path, safe="/")
    parts = []
    for app in app_list:
        label = conditional_escape(app["app_label"])
        current = " current-app" if app["app_url"] in path else ""
        parts.append(f'<div class="app-{label} module{current}"><ol class="px-6">')
        if app["models"] and not app.get("hidden"):
            parts.append("<li>")
            if app["name"]:
                title = gettext("Models in the %(name)s application") % {
                    "name": conditional_escape(app["name"])
                }
                parts.append(format_html(
                    '<h2><a href="{}" class="{}" title="{}">{}</a></h2>',
                    app["app_url"], APP_LINK_CLASSES, mark_safe(title), app["name"],
                ))
            parts.append('<ol class="flex flex-col gap-0.5">')
            for model in app["models"]:
                if model.get("hidden"):
                    continue
                parts.append(model_item(app, label, model, encoded_path))
            parts.append("</ol></li>")
        parts.append("</ol></div>")
    return mark_safe("".join(parts))


def model_item(app, app_label, model, encoded_path) -> str:
    name = model["object_name"].lower()
    url = model.get("admin_url")
    # The template's `url in path`: an empty URL is in every path, None in none.
    here = isinstance(url, str) and url in encoded_path
    item = [format_html('<li class="model-{}{}">', name, " current-model" if here else "")]
    if model.get("header"):
        item.append(format_html(
            '<h3 class="font-medium my-2 text-base-900 text-sm dark:text-base-200">{}</h3>',
            model["header"],
        ))
    if url:
        item.append(format_html(
            '<a href="{}" id="link-{}-{}" class="{}{}">{}</a>',
            url, mark_safe(app_label), name, MODEL_LINK_CLASSES,
            MODEL_LINK_ACTIVE if here else "", model["name"],
        ))
    else:
        item.append(conditional_escape(model["name"]))
    item.append("</li>")
    return "".join(item)
