"""Every control of the study and twin forms has a label bound to it: a <label for>, a wrapping <label>, or
the legend of its fieldset for a group of checkboxes."""

from html.parser import HTMLParser

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


class Controls(HTMLParser):
    """The form's controls, the ids labels point at, and the open elements above each control."""

    def __init__(self):
        super().__init__()
        self.stack, self.controls, self.label_targets, self.legends, self.empty_label_targets = [], [], set(), [], 0
        self._in_legend = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "label":
            target = attributes.get("for")
            if target == "":
                self.empty_label_targets += 1
            elif target:
                self.label_targets.add(target)
        if tag in ("input", "select", "textarea") and attributes.get("type") not in ("hidden", "submit"):
            self.controls.append((attributes.get("id"), [name for name, _ in self.stack]))
        self._in_legend = tag == "legend"
        if tag not in ("input", "br", "img", "meta", "link", "hr"):
            self.stack.append((tag, attributes))

    def handle_endtag(self, tag):
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == tag:
                del self.stack[index:]
                break
        self._in_legend = False

    def handle_data(self, data):
        if self._in_legend and data.strip():
            self.legends.append(data.strip())


@pytest.mark.parametrize(
    "url_name, kwargs",
    [("evaluation:study_new", {}), ("modeling:twin", {}), ("modeling:job_new", {"kind": "generate_recommendations"})],
)
def test_every_control_has_a_bound_label(client, admin_user, tiny_cohort, url_name, kwargs):
    client.force_login(admin_user)
    parser = Controls()
    parser.feed(client.get(reverse(url_name, kwargs=kwargs)).content.decode())
    assert parser.controls
    unlabelled = [
        control_id
        for control_id, ancestors in parser.controls
        if control_id not in parser.label_targets and "label" not in ancestors
    ]
    assert unlabelled == [] and parser.empty_label_targets == 0


def test_the_variants_group_has_a_legend(client, researcher, tiny_cohort):
    """A group of checkboxes is named by a legend, not by a label bound to nothing."""
    client.force_login(researcher)
    parser = Controls()
    parser.feed(client.get(reverse("evaluation:study_new")).content.decode())
    assert "Variants" in parser.legends and "Clinicians" in parser.legends
