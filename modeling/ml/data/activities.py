"""The activity kinds of the synthetic world, with the physiology each one drives."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ActivityKind:
    name: str
    met: float  # metabolic equivalent at a typical intensity
    cadence_spm: float  # steps per minute (0 when no steps are counted)
    accel_mg: float  # typical wrist acceleration magnitude
    altitude_m_per_min: float  # climbing rate while doing it
    duration_min: tuple[int, int]
    locomotion: bool  # moves the body from place to place
    cardio: bool  # a cardio (vs strength / flexibility) exercise


ACTIVITY_KINDS: tuple[ActivityKind, ...] = (
    ActivityKind("walk", 3.3, 108, 180, 0.2, (15, 60), True, True),
    ActivityKind("run", 9.0, 162, 650, 0.3, (20, 60), True, True),
    ActivityKind("cycle", 7.0, 0, 110, 0.4, (20, 90), True, True),
    ActivityKind("strength", 5.0, 8, 320, 0.0, (30, 60), False, False),
    ActivityKind("yoga", 2.8, 4, 70, 0.0, (30, 75), False, False),
    ActivityKind("swim", 7.5, 0, 420, 0.0, (25, 60), True, True),
    ActivityKind("commute_walk", 3.5, 112, 190, 0.1, (10, 30), True, True),
    ActivityKind("commute_cycle", 6.5, 0, 120, 0.2, (10, 35), True, True),
    ActivityKind("hiit", 8.5, 60, 700, 0.0, (15, 35), False, True),
    ActivityKind("hike", 6.0, 95, 230, 4.0, (60, 180), True, True),
    ActivityKind("dance", 5.5, 70, 420, 0.0, (20, 60), False, True),
    ActivityKind("tennis", 7.3, 85, 600, 0.0, (40, 90), False, True),
    ActivityKind("stairs", 8.0, 90, 300, 9.0, (3, 10), True, True),
    ActivityKind("elliptical", 5.0, 130, 260, 0.0, (20, 45), False, True),
    ActivityKind("rowing", 7.0, 0, 380, 0.0, (15, 40), False, True),
    ActivityKind("housework", 3.0, 35, 200, 0.1, (20, 60), False, False),
)

ACTIVITY_NAMES: tuple[str, ...] = tuple(kind.name for kind in ACTIVITY_KINDS)
ACTIVITY_INDEX: dict[str, int] = {name: index for index, name in enumerate(ACTIVITY_NAMES)}
# Kinds chosen for leisure bouts (commutes are scheduled separately on weekdays).
LEISURE_KINDS: tuple[int, ...] = tuple(
    i for i, kind in enumerate(ACTIVITY_KINDS) if not kind.name.startswith("commute")
)

# Event kinds other than activities that the simulator records as ground truth.
OTHER_EVENT_KINDS = ("sleep", "stress", "illness")
