"""{% static %} and {% url %} (healthagent.templatetags.fixed_urls) give what Django's give, computed once."""

import re
from pathlib import Path

import pytest
from django.template import Context, Engine, Template, TemplateSyntaxError
from django.templatetags.static import static
from django.test import override_settings
from django.urls import NoReverseMatch, reverse

from healthagent.templatetags.fixed_urls import fixed_url, static_url


def _render(source: str, **context) -> str:
    return Template(source).render(Context(context))


def test_the_sites_templates_use_these_tags():
    """Built in, and no template loads Django's ``static`` over it."""
    engine = Engine.get_default()
    assert "healthagent.templatetags.fixed_urls" in engine.builtins
    templates = [path for folder in engine.dirs for path in Path(folder).rglob("*.html")]
    assert templates and not [path for path in templates if re.search(r"{%\s*load\b[^%]*\bstatic\b", path.read_text())]


def test_static_and_url_render_as_django_s():
    source = "{% static 'css/site.css' %}|{% url 'home' %}|{% url 'evaluation:assignment' 7 %}"
    assert _render(source) == f"{static('css/site.css')}|{reverse('home')}|{reverse('evaluation:assignment', args=[7])}"
    assert _render("{% url 'evaluation:assignment' pk %}", pk=8) == reverse("evaluation:assignment", args=[8])
    assert _render("{% url 'home' as home %}<{{ home }}>") == f"<{reverse('home')}>"
    assert _render("{% url 'no-such-page' as missing %}<{{ missing }}>") == "<>"
    with pytest.raises(NoReverseMatch):
        _render("{% url 'no-such-page' %}")
    with pytest.raises(TemplateSyntaxError):
        _render("{% url %}")


def test_a_url_without_arguments_is_worked_out_once():
    fixed_url.cache_clear()
    static_url.cache_clear()
    for _ in range(3):
        _render("{% url 'home' %}{% static 'css/site.css' %}")
    assert fixed_url.cache_info().misses == 1 and fixed_url.cache_info().hits == 2
    assert static_url.cache_info().misses == 1 and static_url.cache_info().hits == 2


def test_changed_settings_are_followed():
    before = _render("{% static 'css/site.css' %}")
    with override_settings(STATIC_URL="/elsewhere/"):
        assert _render("{% static 'css/site.css' %}").startswith("/elsewhere/")
    assert _render("{% static 'css/site.css' %}") == before


def test_an_id_s_url_is_put_in_its_frame_worked_out_once():
    from healthagent.templatetags import fixed_urls

    fixed_urls._frame.cache_clear()
    for pk in (0, 7, 123456789012345):
        assert fixed_urls.url_with_id("evaluation:assignment_submit", pk) == reverse(
            "evaluation:assignment_submit", args=[pk]
        )
    assert fixed_urls._frame.cache_info().misses == 1
    # Not an id: Django's reverse, which refuses what the URL's converter does not take.
    with pytest.raises(NoReverseMatch):
        fixed_urls.url_with_id("evaluation:assignment_submit", -1)
    assert fixed_urls.url_with_id("evaluation:assignment_submit", "12") == reverse(
        "evaluation:assignment_submit", args=["12"]
    )


def test_a_url_that_writes_an_id_its_own_way_is_not_framed(monkeypatch):
    """A converter that pads (or otherwise rewrites) the number: the two ids' URLs do not share a frame, so every
    call goes to reverse."""
    from healthagent.templatetags import fixed_urls

    def padded(view_name, args=(), **kwargs):
        return f"/things/{args[0]:020d}/"

    fixed_urls._frame.cache_clear()
    monkeypatch.setattr(fixed_urls, "reverse", padded)
    assert fixed_urls._frame("things", "/", None, None) is None
    assert fixed_urls.url_with_id("things", 7) == "/things/00000000000000000007/"


def test_a_pattern_the_marks_do_not_fit_is_reversed_each_time(monkeypatch):
    """A URL whose pattern takes fewer digits than the marks: no frame, and the id's URL from reverse."""
    from healthagent.templatetags import fixed_urls

    def few_digits(view_name, args=(), **kwargs):
        if len(str(args[0])) > 6:
            raise NoReverseMatch("at most 6 digits")
        return f"/short/{args[0]}/"

    fixed_urls._frame.cache_clear()
    monkeypatch.setattr(fixed_urls, "reverse", few_digits)
    assert fixed_urls.url_with_id("short", 7) == "/short/7/"
    fixed_urls._frame.cache_clear()
