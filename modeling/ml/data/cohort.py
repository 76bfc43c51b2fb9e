"""A whole synthetic cohort: traits, minute-level days, labels and sparse timelines.

Every participant has their own random stream spawned from the cohort seed, so participant i is
the same whatever the cohort size and whichever order participants are generated in.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from modeling.ml.data.clinical import Timeline, simulate_timeline
from modeling.ml.data.labels import compute_labels
from modeling.ml.data.minutes import MinuteRecord, simulate_minutes
from modeling.ml.data.traits import Traits, sample_traits


@dataclass
class SyntheticParticipant:
    index: int
    source_id: str  # the identifier a real export would carry; anonymized on import
    traits: dict[str, float]
    labels: dict[str, float]
    minutes: MinuteRecord
    timeline: Timeline
    minute_start_day: int  # day index (in the timeline) of the first minute-level day


@dataclass
class SyntheticCohort:
    seed: int
    traits: Traits
    labels: dict[str, np.ndarray]
    days: int
    history_days: int

    def participant(self, index: int) -> SyntheticParticipant:
        stream = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(index + 1,)))
        timeline = simulate_timeline(self.traits, index, self.history_days, stream)
        minutes = simulate_minutes(self.traits.row(index), self.days, stream, start_weekday=int(stream.integers(0, 7)))
        return SyntheticParticipant(
            index=index,
            source_id=f"SYN-{self.seed}-{index:05d}",
            traits=self.traits.row(index),
            labels={name: values[index].item() for name, values in self.labels.items()},
            minutes=minutes,
            timeline=timeline,
            minute_start_day=self.history_days - self.days,
        )

    def __iter__(self) -> Iterator[SyntheticParticipant]:
        return (self.participant(index) for index in range(len(self.traits)))

    def __len__(self) -> int:
        return len(self.traits)


def make_cohort(*, participants: int, days: int, seed: int, history_days: int = 365) -> SyntheticCohort:
    """The cohort of ``participants`` people with ``days`` minute-level days at the end of ``history_days``."""
    if participants < 1 or days < 1:
        raise ValueError("a cohort needs at least one participant and one day")
    history_days = max(history_days, days)
    traits_parts, label_parts = [], []
    for index in range(participants):  # one stream per person: participant i never depends on the cohort size
        person = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, index)))
        traits_parts.append(sample_traits(1, person))
        label_parts.append(compute_labels(traits_parts[-1], person))
    labels = {name: np.concatenate([part[name] for part in label_parts]) for name in label_parts[0]}
    return SyntheticCohort(
        seed=seed, traits=Traits.concatenate(traits_parts), labels=labels, days=days, history_days=history_days
    )


def participant_split(participants: int, held_out_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) participant indices: every split of the model library is by participant, never by window."""
    order = np.random.default_rng(seed).permutation(participants)
    held_out = max(1, int(participants * held_out_fraction)) if participants > 1 else 0
    return np.sort(order[held_out:]), np.sort(order[:held_out])
