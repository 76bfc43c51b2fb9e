"""Markdown from agents and raters, rendered to HTML that can hold no script (sanitized by nh3)."""

from functools import lru_cache

import markdown as markdown_library
import nh3
from django import template
from django.utils.safestring import mark_safe

register = template.Library()

ALLOWED_TAGS = {"p", "br", "strong", "em", "ol", "ul", "li", "code", "blockquote", "h3", "h4"}


@lru_cache(maxsize=1024)  # a pure function of the text, and slow (python-markdown): the same answer is shown to
# every rater of its item, so each web process renders it once
def render_markdown(text: str) -> str:
    html = markdown_library.markdown(text or "", extensions=[], output_format="html")
    return nh3.clean(html, tags=ALLOWED_TAGS, attributes={}, url_schemes=set())


@register.filter(name="markdown")
def markdown_filter(text: str) -> str:
    return mark_safe(render_markdown(text))
