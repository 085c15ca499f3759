"""The admin's look, in one place: every admin class of the project inherits from here.

The theme is django-unfold (README, "The admin"). A new screen writes

    from customers.admin_base import ModelAdmin, StackedInline, TabularInline

and inherits from those instead of django.contrib.admin's classes (whose forms would
render without the theme's styles). customers is the lowest app, so every app may import
this module without breaking the one-way imports.

A form that is not a ModelAdmin's (an operation's form page) gets the theme's input
styles with `style_form(form)` and renders its fields with "admin/includes/form_fields.html".

Lists stay fast (bench --only changelist): the theme recomputes every column header (the
select-all checkbox rendered through the widget templates among them) for each row it lists,
to label the row's cells; here they are computed once per list, and so are the filters
each row's link carries. (The theme's admin/change_list_results.html is overridden for
the same reason: templates/admin/.)
"""

from functools import lru_cache
from urllib.parse import parse_qsl, urlencode

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group, User
from django.utils.functional import Promise
from unfold import widgets as theme
from unfold.admin import ModelAdmin as ThemeModelAdmin
from unfold.admin import StackedInline as ThemeStackedInline
from unfold.admin import TabularInline as ThemeTabularInline
from unfold.forms import AdminPasswordChangeForm, UserChangeForm, UserCreationForm
from unfold.templatetags import unfold_list

_theme_result_headers = unfold_list.result_headers


def result_headers_once(changelist):
    """The theme's column headers of a list, computed on the list's first call and kept on
    the list (one request) for the calls of each of its rows."""
    headers = getattr(changelist, "_result_headers", None)
    if headers is None:
        headers = list(_theme_result_headers(changelist))
        for header in headers:
            # Translated once: each row's cells repeat their column's text (data-label).
            if isinstance(header.get("text"), Promise):
                header["text"] = str(header["text"])
        changelist._result_headers = headers
    return iter(headers)


unfold_list.result_headers = result_headers_once

_theme_add_preserved_filters = unfold_list.add_preserved_filters


def row_link_with_filters(context, url, popup=False, to_field=None):
    """add_preserved_filters() as the theme calls it for each row's link (the list's
    filters and the row's change URL): the same URL, without resolving every row's URL
    again (a tenth of a 100-row list's CPU). A row's change URL never leads back to the
    list, so its query is the list's preserved filters, made once per list. Any other
    call goes to Django's function."""
    if (
        popup or to_field or set(context) != {"preserved_filters", "opts"}
        or not context["opts"] or not url.endswith("/change/") or "?" in url or "#" in url
    ):
        return _theme_add_preserved_filters(context, url, popup, to_field)
    query = _preserved_query(context["preserved_filters"] or "")
    return f"{url}?{query}" if query else url


@lru_cache(maxsize=256)
def _preserved_query(preserved_filters: str) -> str:
    return urlencode(dict(parse_qsl(preserved_filters)))


unfold_list.add_preserved_filters = row_link_with_filters

# The rows' cells of the lists that opt in (list_rows_fast), written once per column.
from . import admin_list  # noqa: E402,F401


class ModelAdmin(ThemeModelAdmin):
    """The project's ModelAdmin: the theme's forms, widgets and lists."""

    # The filters apply when chosen, as in the stock admin (no separate submit button).
    list_filter_submit = False
    # No "Show counts": a count per filter choice reads whole tables (1,000,000 invoices).
    show_facets = admin.ShowFacets.NEVER
    # The list's cells written by customers.admin_list instead of the theme, cell by cell.
    list_rows_fast = False


class TabularInline(ThemeTabularInline):
    pass


class StackedInline(ThemeStackedInline):
    pass


def input_classes(widget: forms.Widget) -> str:
    if isinstance(widget, forms.CheckboxInput):
        classes = theme.CHECKBOX_CLASSES
    elif isinstance(widget, forms.RadioSelect):
        classes = theme.RADIO_CLASSES
    elif isinstance(widget, forms.Select):
        classes = theme.SELECT_CLASSES
    elif isinstance(widget, forms.Textarea):
        classes = theme.TEXTAREA_CLASSES
    elif isinstance(widget, forms.DateTimeInput | forms.DateInput):
        classes = theme.DATETIME_CLASSES
    else:
        classes = theme.INPUT_CLASSES
    return " ".join(classes)


def style_form(form: forms.BaseForm) -> forms.BaseForm:
    """Give a plain form's inputs the theme's classes (a ModelAdmin does this itself)."""
    for field in form.fields.values():
        widget = field.widget
        if type(widget) is forms.RadioSelect:
            # The stock radio list renders its labels squeezed beside the theme's
            # radios: the theme's own widget lays each choice out on its line.
            field.widget = theme.UnfoldAdminRadioSelectWidget(
                attrs=widget.attrs, choices=widget.choices
            )
            continue
        if not isinstance(widget, forms.HiddenInput):
            widget.attrs["class"] = f"{widget.attrs.get('class', '')} {input_classes(widget)}"
    return form


# The auth screens, in the theme too (registered by customers.admin).
class UserAdmin(BaseUserAdmin, ModelAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = AdminPasswordChangeForm


class GroupAdmin(BaseGroupAdmin, ModelAdmin):
    pass


AUTH_ADMINS = {User: UserAdmin, Group: GroupAdmin}
