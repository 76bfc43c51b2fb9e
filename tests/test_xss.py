"""Hostile text in rating comments, agent answers, imported cohort metadata and study names is
served inert: escaped, or stripped by the markdown sanitizer (nh3), on every page that shows it."""

import pytest

from healthagent.templatetags.markdown_tags import render_markdown
from tests.factories import UserFactory
from tests.xss_payloads import EVERYTHING, IMAGE, LINK, SCRIPT, SVG, live_markup, plant_payloads

pytestmark = pytest.mark.django_db


def test_every_page_that_shows_planted_text_serves_it_inert(client, grounded_study):
    pages = plant_payloads(grounded_study)
    clinician = grounded_study.clinicians.order_by("pk").first()
    for role, urls in pages.items():
        client.force_login(clinician if role == "clinician" else UserFactory(role=role))
        for url in urls:
            response = client.get(url, follow=True)
            html = response.content.decode()
            assert response.status_code == 200, url
            assert live_markup(html) == [], f"{role} {url}"
            assert (
                "&lt;script&gt;" in html or "\\u003Cscript\\u003E" in html or "&lt;img" in html or "&lt;svg" in html
            ), f"{role} {url}: the planted text is not on the page, so the test proves nothing"


@pytest.mark.parametrize(
    "payload",
    [
        SCRIPT,
        IMAGE,
        SVG,
        LINK,
        EVERYTHING,
        '<iframe src="https://evil.example"></iframe>',
        '<p style="background:url(x)">styled</p>',
        "**bold** [ok](https://example.org) <form action=/logout/><button>x</button></form>",
    ],
)
def test_the_markdown_sanitizer_keeps_text_and_drops_active_content(payload):
    html = render_markdown(payload)
    assert live_markup(html) == []
    for forbidden in ("<script", "<img", "<svg", "<iframe", "<form", "<a ", "style=", "javascript:"):
        assert forbidden not in html.lower(), (forbidden, html)


def test_the_markdown_sanitizer_keeps_what_answers_need():
    html = render_markdown("**Sleep** more:\n\n1. *earlier* bedtime\n2. `7 h`\n\n> note")
    assert (
        "<strong>Sleep</strong>" in html
        and "<em>earlier</em>" in html
        and "<ol>" in html
        and "<code>7 h</code>" in html
    )
    assert "<blockquote>" in html
