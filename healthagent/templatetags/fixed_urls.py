"""``{% static %}`` and ``{% url %}`` as Django's, with the URLs that never change within a process worked out once.

Every page renders the same few: the style sheet and scripts in ``<head>`` and the navigation's links (a static
file's URL is fixed once its storage has read the manifest; a named URL without arguments depends only on the URL
configuration and the script prefix). Django's tags compute each of them again on every page: ``reverse`` walks the
URL patterns' candidates, ``static`` asks the app registry and the storage, 10-25 µs a tag (measured: 165 µs for the
rating page's 6 static files and 5 links, 38 µs with these; issue 27). A URL whose one argument is an id (an
item's own: ``/evaluation/items/7/submit/``) is the same around the number for every id: that frame is worked out
once (:func:`url_with_id`), checked with two ids, and the number put in it.

Installed in settings (``TEMPLATES``) among the built-in tags: a template uses ``{% static %}`` without
``{% load static %}``, which would load Django's in its place. The caches are emptied when a test changes the
settings they depend on.
"""

from functools import lru_cache

from django import template
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.template.defaulttags import URLNode
from django.template.defaulttags import url as django_url
from django.templatetags.static import StaticNode
from django.urls import NoReverseMatch, get_script_prefix, get_urlconf, reverse
from django.utils.html import conditional_escape

register = template.Library()


@lru_cache(maxsize=512)
def static_url(path: str) -> str:
    return StaticNode.handle_simple(path)


@lru_cache(maxsize=512)
def fixed_url(view_name: str, script_prefix: str, urlconf: str | None, current_app: str | None) -> str:
    """``reverse(view_name)``, which depends on nothing else (the script prefix is ``reverse``'s own)."""
    return reverse(view_name, urlconf=urlconf, current_app=current_app)


@receiver(setting_changed)
def _forget(*, setting: str, **kwargs) -> None:
    if setting in {
        "STATIC_URL",
        "STATIC_ROOT",
        "STORAGES",
        "ROOT_URLCONF",
        "FORCE_SCRIPT_NAME",
        "DEBUG",
        "INSTALLED_APPS",
    }:
        static_url.cache_clear()
        fixed_url.cache_clear()
        _frame.cache_clear()


# Two ids no page is about, of different lengths: each URL's frame is taken from the first and checked with the
# second (a converter that pads the number to a width would not give the same frame).
_ID_MARKS = (9071523864271, 81234671)


@lru_cache(maxsize=512)
def _frame(view_name: str, script_prefix: str, urlconf: str | None, current_app: str | None) -> tuple[str, str] | None:
    """(before, after) the id in ``reverse(view_name, args=[id])``, or None if the URL is not the id in a fixed frame
    (a converter that writes an id its own way)."""
    try:
        first, second = (
            reverse(view_name, args=[mark], urlconf=urlconf, current_app=current_app) for mark in _ID_MARKS
        )
    except NoReverseMatch:  # a pattern that takes fewer digits (or no id at all): reverse decides each time
        return None
    before, found, after = first.partition(str(_ID_MARKS[0]))
    if not found or f"{before}{_ID_MARKS[1]}{after}" != second:
        return None
    return before, after


def url_with_id(view_name: str, pk: int, *, current_app: str | None = None) -> str:
    """``reverse(view_name, args=[pk])`` for an id (a non-negative int), from the URL's frame worked out once."""
    frame = None
    if type(pk) is int and pk >= 0:
        frame = _frame(view_name, get_script_prefix(), get_urlconf(), current_app)
    if frame is None:
        return reverse(view_name, args=[pk], current_app=current_app)
    return f"{frame[0]}{pk}{frame[1]}"


class FixedStaticNode(StaticNode):
    @classmethod
    def handle_simple(cls, path: str) -> str:
        return static_url(path)


class FixedURLNode(URLNode):
    def render(self, context) -> str:
        if self.kwargs or len(self.args) > 1:
            return super().render(context)
        try:
            current_app = context.request.current_app
        except AttributeError:
            try:
                current_app = context.request.resolver_match.namespace
            except AttributeError:
                current_app = None
        view_name = self.view_name.resolve(context)
        try:
            if self.args:
                url = url_with_id(view_name, self.args[0].resolve(context), current_app=current_app)
            else:
                url = fixed_url(view_name, get_script_prefix(), get_urlconf(), current_app)
        except NoReverseMatch:
            if self.asvar is None:
                raise
            url = ""
        if self.asvar:
            context[self.asvar] = url
            return ""
        return conditional_escape(url) if context.autoescape else url


@register.tag("static")
def static(parser, token) -> StaticNode:
    """Django's ``{% static "path" [as name] %}``."""
    return FixedStaticNode.handle_token(parser, token)


@register.tag("url")
def url(parser, token) -> FixedURLNode:
    """Django's ``{% url "name" arg ... [as name] %}``."""
    node = django_url(parser, token)
    return FixedURLNode(node.view_name, node.args, node.kwargs, node.asvar)
