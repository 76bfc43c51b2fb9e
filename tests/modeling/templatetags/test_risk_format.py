"""Risks on the twin page: small ones are not shown as "0 %"."""

import pytest
from django.template import Context, Template

from modeling.templatetags.risk_format import risk_percent


@pytest.mark.parametrize(
    ("probability", "shown"),
    [
        (0.0, "0 %"),
        (0.00004, "<0.1 %"),
        (0.0004, "<0.1 %"),
        (0.001, "0.1 %"),
        (0.003, "0.3 %"),
        (0.0049, "0.5 %"),
        (0.042, "4.2 %"),
        (0.0996, "10.0 %"),
        (0.1, "10 %"),
        (0.237, "24 %"),
        (0.9, "90 %"),
        (0.9512, "95.1 %"),
        (0.9996, ">99.9 %"),
        (1.0, "100 %"),
        (None, "—"),
        ("", "—"),
        (float("nan"), "—"),
    ],
)
def test_a_risk_is_written_with_the_precision_it_needs(probability, shown):
    assert risk_percent(probability) == shown


def test_templates_load_it_by_its_module_name():
    rendered = Template("{% load risk_format %}{{ value|risk_percent }}").render(Context({"value": 0.004}))
    assert rendered == "0.4 %"
