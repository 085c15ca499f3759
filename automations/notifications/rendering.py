"""Email templates: built-in files per language (templates/emails/<locale>/<kind>/),
which staff may replace per kind and language (EmailTemplate), checked strictly when
saved: a syntax error, a tag outside the small allowed set or a variable the email does
not provide is refused with the reason, so a broken template never reaches the outbox.

Templates see plain, already formatted values (amounts in the reader's locale, dates
written out): no objects, so nothing in a template can reach the database."""

from dataclasses import dataclass
from functools import cache, lru_cache

from django.conf import settings
from django.template import Context, Engine, TemplateSyntaxError
from django.template.base import FilterExpression, Lexer, TokenType, Variable, VariableNode
from django.template.defaulttags import CommentNode, ForNode, IfNode, WithNode
from django.template.exceptions import TemplateDoesNotExist
from django.utils import translation
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _

from .kinds import kind_get, sample_context

LOCALES = ("en", "fr", "pt-BR")
PARTS = ("subject", "text", "html")
FILES = {"subject": "subject.txt", "text": "body.txt", "html": "body.html"}
FIELDS = {"subject": "subject", "text": "text_body", "html": "html_body"}
ALLOWED_TAGS = {
    "if", "elif", "else", "endif", "for", "empty", "endfor", "with", "endwith", "comment",
    "endcomment",
}
INVALID = "\x00invalid\x00"  # what an unresolvable lookup renders as, then detected


class TemplateError(Exception):
    """A template that cannot be rendered; the message says why, for the admin."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@cache
def engine(*, html: bool) -> Engine:
    return Engine(
        dirs=[settings.BASE_DIR / "templates"],
        autoescape=html,
        string_if_invalid=INVALID,
        loaders=[("django.template.loaders.cached.Loader",
                  ["django.template.loaders.filesystem.Loader"])],
    )


def default_source(kind: str, locale: str, part: str) -> str:
    """The built-in text of one part; English when the language has none."""
    for candidate in (locale, "en"):
        path = f"emails/{candidate}/{kind}/{FILES[part]}"
        try:
            template = engine(html=part == "html").get_template(path)
        except TemplateDoesNotExist:
            continue
        return template.source
    raise TemplateError(_("No built-in template for %(kind)s.") % {"kind": kind})


def default_sources(kind: str, locale: str) -> dict[str, str]:
    return {part: default_source(kind, locale, part) for part in PARTS}


# --- checking -----------------------------------------------------------------------


def _lookup_roots(expression: FilterExpression) -> list[str]:
    roots = []
    variables = [expression.var] + [
        arg for _function, args in expression.filters for is_lookup, arg in args if is_lookup
    ]
    for variable in variables:
        if isinstance(variable, Variable) and variable.lookups:
            roots.append(variable.lookups[0])
    return roots


def _condition_roots(condition) -> list[str]:
    if condition is None:
        return []
    if isinstance(getattr(condition, "value", None), FilterExpression):
        return _lookup_roots(condition.value)
    return _condition_roots(getattr(condition, "first", None)) + _condition_roots(
        getattr(condition, "second", None)
    )


def unknown_names(nodelist, known: frozenset[str]) -> list[str]:
    """Variables used in `nodelist` that are neither in `known` nor bound by a loop/with."""
    unknown = []
    for node in nodelist:
        if isinstance(node, VariableNode):
            unknown += [n for n in _lookup_roots(node.filter_expression) if n not in known]
        elif isinstance(node, IfNode):
            for condition, branch in node.conditions_nodelists:
                unknown += [n for n in _condition_roots(condition) if n not in known]
                unknown += unknown_names(branch, known)
        elif isinstance(node, ForNode):
            unknown += [n for n in _lookup_roots(node.sequence) if n not in known]
            inner = known | set(node.loopvars) | {"forloop"}
            unknown += unknown_names(node.nodelist_loop, inner)
            unknown += unknown_names(node.nodelist_empty, known)
        elif isinstance(node, WithNode):
            for expression in node.extra_context.values():
                unknown += [n for n in _lookup_roots(expression) if n not in known]
            unknown += unknown_names(node.nodelist, known | set(node.extra_context))
        elif not isinstance(node, CommentNode):
            unknown += unknown_names(getattr(node, "nodelist", []) or [], known)
    return unknown


def part_check(source: str, *, kind: str, html: bool) -> list[str]:
    """Why this template part cannot be used (empty when it can)."""
    for token in Lexer(source).tokenize():
        if token.token_type == TokenType.BLOCK:
            tag = (token.split_contents() or [""])[0]
            if tag not in ALLOWED_TAGS:
                return [
                    _("The tag {%% %(tag)s %%} is not allowed in emails; use if, for or with.")
                    % {"tag": tag}
                ]
    try:
        template = engine(html=html).from_string(source)
    except TemplateSyntaxError as error:
        return [_("Template syntax error: %(error)s") % {"error": error}]
    variables = kind_get(kind).variables
    unknown = sorted(set(unknown_names(template.nodelist, frozenset(variables))))
    if unknown:
        return [
            _("Unknown variables: %(unknown)s. This email provides: %(known)s.")
            % {"unknown": ", ".join(unknown), "known": ", ".join(variables)}
        ]
    try:
        output = template.render(Context(sample_context(kind)))
    except Exception as error:  # a filter failing on real values: refuse, say why
        return [_("The template fails on sample values: %(error)s") % {"error": error}]
    if INVALID in output:
        return [_("The template looks up something the email does not provide.")]
    return []


def template_validate(kind: str, *, subject: str, text: str, html: str) -> dict[str, list]:
    """Errors per model field, for EmailTemplate.clean()."""
    errors = {}
    for part, source in (("subject", subject), ("text", text), ("html", html)):
        problems = part_check(source or "", kind=kind, html=part == "html")
        if problems:
            errors[FIELDS[part]] = problems
    return errors


# --- rendering ----------------------------------------------------------------------


@lru_cache(maxsize=256)
def _compiled(source: str, html: bool):
    return engine(html=html).from_string(source)


def sources_for(kind: str, locale: str, overrides: dict | None = None) -> dict[str, str]:
    """Staff's version when there is one for this kind and language, else the file's."""
    if overrides is None:
        from .models import EmailTemplate

        overrides = {
            (t.kind, t.locale): t for t in EmailTemplate.objects.filter(kind=kind, locale=locale)
        }
    custom = overrides.get((kind, locale))
    if custom is not None:
        return {"subject": custom.subject, "text": custom.text_body, "html": custom.html_body}
    return default_sources(kind, locale)


def email_render(kind: str, locale: str, context: dict, overrides: dict | None = None) -> Rendered:
    """Subject, text and branded HTML of one email, in `locale`."""
    sources = sources_for(kind, locale, overrides)
    values = Context(context)
    with translation.override(locale.lower()):
        try:
            subject = _compiled(sources["subject"], False).render(values)
            text = _compiled(sources["text"], False).render(values)
            content = _compiled(sources["html"], True).render(values)
        except TemplateSyntaxError as error:
            raise TemplateError(_("Template syntax error: %(error)s") % {"error": error}) from None
        html = engine(html=True).get_template("emails/layout.html").render(
            Context({**context, "content": mark_safe(content), "locale": locale})
        )
    if INVALID in subject + text + content:
        raise TemplateError(_("The %(kind)s template uses a value this email lacks.")
                            % {"kind": kind})
    return Rendered(" ".join(subject.split()), text.strip() + "\n", html)
