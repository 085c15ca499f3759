"""The cells of the busiest lists' rows (invoices, customers), written without the theme's
per-cell machinery.

For each cell of each row, the theme's items_for_result looks the column up again (field
or admin method), recomputes the row's CSS classes, resolves the row's change URL and
builds the cell through two or three format_html calls: over half of a 100-row invoice
list's CPU (bench --only changelist). Here what a column's cells share is worked out
once per list (how its value is read and shown, its classes, its label, the change URL
around the row's id), and a row costs its values. The cells are the theme's, character
for character (tests/test_admin_fast_list.py compares both over representative rows).

Each row's <tbody> is written here too (WrittenRow), which the template outputs as it
is: its loop over a row's cells and settings was a sixth of the page's CPU.

A ModelAdmin opts in with `list_rows_fast = True`. A list this does not cover (a popup,
editable columns, sortable rows, sections, row actions, a column of a kind not listed in
`column_cell`) is left to the theme; a row whose related object is missing gets the
theme's cells.
"""

import datetime

from django.contrib.admin.utils import (
    FieldIsAForeignKeyColumnName,
    _get_non_gfk_field,
    quote,
)
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist
from django.db import models
from django.urls import NoReverseMatch, reverse
from django.utils.html import conditional_escape
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from unfold.templatetags import unfold_list
from unfold.utils import display_for_field, display_for_value

PK_MARKER = "0PK0"


class NotCovered(Exception):
    """The list (or one of its columns) is left to the theme."""


def fast_results(cl):
    """unfold_list.results(cl), the rows' cells built by ListRows when the list opts in."""
    rows = list_rows(cl)
    if rows is None:
        yield from _theme_results(cl)
        return
    for index, result in enumerate(cl.result_list):
        yield WrittenRow(result, rows.cells(result), index)


class WrittenRow(unfold_list.UnfoldResultList):
    """A row's cells, and the row itself as admin/change_list_results.html writes it
    (`tbody`; the template writes a row without one itself), with its cycling colour."""

    TBODY = (
        '<tbody class="block relative lg:table-row-group {}" x-data="{{rowOpen: false}}" >'
        '<tr class="data-row block border border-base-200 mb-3 relative rounded-default '
        'lg:table-row lg:border-none lg:mb-0 lg:rounded-none dark:border-base-800">'
    )
    STRIPES = (TBODY.format(""), TBODY.format("bg-base-50 dark:bg-white/[.02]"))

    def __init__(self, result, cells, index):
        super().__init__(result, None, cells)
        self.tbody = mark_safe(f"{self.STRIPES[index % 2]}{''.join(cells)}</tr></tbody>")


def list_rows(cl):
    if not getattr(cl.model_admin, "list_rows_fast", False):
        return None
    try:
        return ListRows(cl)
    except NotCovered:
        return None


class ListRows:
    def __init__(self, cl):
        admin = cl.model_admin
        if (
            getattr(cl, "formset", None) or cl.is_popup or cl.to_field
            or getattr(admin, "ordering_field", None) or getattr(admin, "list_sections", None)
            or getattr(admin, "actions_row", None)
            or not isinstance(cl.lookup_opts.pk, models.AutoField | models.BigAutoField)
        ):
            raise NotCovered
        self.cl = cl
        headers = list(unfold_list.result_headers(cl))
        empty = admin.get_empty_value_display()
        first = True
        self.columns = []
        for index, name in enumerate(cl.list_display):
            linked = link_in_col(first, name, cl)
            if linked:
                tag = "th" if first else "td"
                first = False
            else:
                tag = "td"
            label = _("Select record") if index == 0 and not linked else headers[index]["text"]
            self.columns.append(self.column_cell(index, name, tag, linked, label, empty))

    def cells(self, result) -> list[str]:
        try:
            return [cell(result) for cell in self.columns]
        except ObjectDoesNotExist:  # the theme shows the empty value: its own path
            return list(unfold_list.items_for_result(self.cl, result, None))

    def column_cell(self, index, name, tag, linked, label, empty):
        """A function of a row giving this column's cell, as items_for_result writes it."""
        classes = [f"field-{unfold_list._coerce_field_name(name, index)}",
                   *unfold_list.ROW_CLASSES]
        value_html, computed = self.value_reader(name, classes, empty)
        if name == "action_checkbox":
            if index != 0 or linked:
                raise NotCovered
            classes = unfold_list.CHECKBOX_CLASSES
        head = f'<{tag} class="{" ".join(classes)}" data-label="{conditional_escape(label)}">'
        tail = f"</{tag}>"
        dated = []  # a callable's value that is a date: the theme adds "nowrap" per cell
        if linked:
            url = self.change_url_maker()
            link_classes = " ".join(unfold_list.LINK_CLASSES)
            if url is None:
                def cell(result):
                    return mark_safe(head + value_html(result, dated) + tail)
            else:
                def cell(result):
                    return mark_safe(
                        f'{head}<a href="{url(result)}" class="{link_classes}" >'
                        f"{value_html(result, dated)}</a>{tail}"
                    )
        else:
            def cell(result):
                return mark_safe(head + value_html(result, dated) + tail)
        if not computed:
            return cell
        # An admin method: a date it returns changes the cell's classes, row by row.
        dated_head = head.replace('" data-label=', ' nowrap" data-label=', 1)

        def checked_cell(result):
            html = cell(result)
            if dated:
                dated.clear()
                html = mark_safe(html.replace(head, dated_head, 1))
            return html

        return checked_cell

    def value_reader(self, name, classes, empty):
        """(A function (row, dated) -> the escaped value's HTML, as lookup_field and the
        theme's display_for_* give it; whether the value is an admin method's). `classes`
        gains "nowrap" where the theme adds it for every row (a date field, a foreign key)."""
        admin = self.cl.model_admin
        try:
            field = _get_non_gfk_field(self.cl.lookup_opts, name)
        except (FieldDoesNotExist, FieldIsAForeignKeyColumnName):
            field = None
        if field is not None:
            if field.auto_created:
                raise NotCovered
            if isinstance(field, models.DateField | models.TimeField | models.ForeignKey):
                classes.append("nowrap")
            if isinstance(field.remote_field, models.ManyToOneRel):
                attribute = field.name

                def related(result, dated):
                    value = getattr(result, attribute)
                    return conditional_escape(empty if value is None else value)

                return related, False
            if getattr(field, "flatchoices", None):
                try:
                    choices = dict(field.flatchoices)
                except TypeError:  # list-like choices: the theme's own path
                    raise NotCovered from None

                def chosen(result, dated):
                    return conditional_escape(choices.get(getattr(result, name), empty))

                return chosen, False

            shown = {}  # by value: a list repeats dates and amounts (one request, one locale)

            def plain(result, dated):
                value = getattr(result, name)
                try:
                    return shown[value]
                except KeyError:
                    html = shown[value] = conditional_escape(
                        display_for_field(value, field, empty)
                    )
                    return html
                except TypeError:  # not hashable
                    return conditional_escape(display_for_field(value, field, empty))

            return plain, False
        if callable(name) or name == "__str__" or not hasattr(admin, name):
            raise NotCovered
        method = getattr(admin, name)
        if any(getattr(method, flag, False) for flag in ("boolean", "label", "header", "dropdown")):
            raise NotCovered
        empty = getattr(method, "empty_value_display", empty)

        def computed(result, dated):
            value = method(result)
            if isinstance(value, datetime.date | datetime.time):
                dated.append(True)
            return conditional_escape(display_for_value(value, empty, False))

        return computed, True

    def change_url_maker(self):
        """A function of a row giving its change URL with the list's filters, as the
        theme builds it (cl.url_for_result, then add_preserved_filters), from the URL
        of a marker id made once; None when the model has no change page."""
        cl = self.cl
        opts = cl.opts
        try:
            marked = reverse(
                f"admin:{opts.app_label}_{opts.model_name}_change", args=(PK_MARKER,),
                current_app=cl.model_admin.admin_site.name,
            )
        except NoReverseMatch:
            return None
        marked = unfold_list.add_preserved_filters(
            {"preserved_filters": cl.preserved_filters, "opts": cl.opts}, marked
        )
        before, found, after = str(conditional_escape(marked)).partition(f"/{PK_MARKER}/")
        if not found or PK_MARKER in after:
            raise NotCovered
        pk = cl.pk_attname

        def url(result):
            return f"{before}/{quote(getattr(result, pk))}/{after}"

        return url


def link_in_col(is_first: bool, field_name: str, cl) -> bool:
    """The theme's rule: is this column the row's link to its change page?"""
    if cl.list_display_links is None:
        return False
    if is_first and not cl.list_display_links:
        return True
    return field_name in cl.list_display_links


_theme_results = unfold_list.results
unfold_list.results = fast_results
