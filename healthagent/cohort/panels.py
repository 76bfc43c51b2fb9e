"""Sections other rooms add to a participant's page (for researchers), by registration: the cohort room is
below them and imports none of them. A panel takes the participant and returns the template to include and
its context, or None when it has nothing to show."""

from collections.abc import Callable
from dataclasses import dataclass

from healthagent.models import Participant


@dataclass(frozen=True)
class Panel:
    template: str
    context: dict


ParticipantPanel = Callable[[Participant], Panel | None]
_panels: list[ParticipantPanel] = []


def participant_panel_register(panel: ParticipantPanel) -> None:
    if panel not in _panels:
        _panels.append(panel)


def participant_panels(participant: Participant) -> list[Panel]:
    """The registered panels that have something to show for ``participant``, in the order they registered."""
    return [panel for panel in (provider(participant) for provider in _panels) if panel is not None]
