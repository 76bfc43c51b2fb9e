"""Minute-level wearable signals of one participant, generated from their latent traits.

One participant's whole stay is simulated as a single timeline of ``days * 1440`` minutes, so
nights cross midnight naturally; the result is cut into day windows of shape ``(channels, 1440)``. Every
step is vectorised over minutes; Python loops run only over nights and activity bouts.
"""

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import lfilter

from modeling.ml.data.activities import ACTIVITY_KINDS, ACTIVITY_NAMES, LEISURE_KINDS
from modeling.ml.data.spec import FEATURE_INDEX, FEATURES, MINUTES_PER_DAY, NUM_FEATURES, channels_of_family

_CARDIO = channels_of_family("cardio")
_EDA = channels_of_family("eda")
_VALID_LOW = np.array([feature.valid_range[0] for feature in FEATURES], dtype=np.float32)
_VALID_HIGH = np.array([feature.valid_range[1] for feature in FEATURES], dtype=np.float32)
_KIND_MET = np.array([kind.met for kind in ACTIVITY_KINDS], dtype=np.float32)
_KIND_CADENCE = np.array([kind.cadence_spm for kind in ACTIVITY_KINDS], dtype=np.float32)
_KIND_ACCEL = np.array([kind.accel_mg for kind in ACTIVITY_KINDS], dtype=np.float32)
_KIND_CLIMB = np.array([kind.altitude_m_per_min for kind in ACTIVITY_KINDS], dtype=np.float32)
# A cosine over the day peaking at 16:00: the afternoon high of heart rate and arousal.
_CIRCADIAN = np.cos(2 * np.pi * (np.arange(MINUTES_PER_DAY) - 16 * 60) / MINUTES_PER_DAY).astype(np.float32)


@dataclass(frozen=True)
class Event:
    """A ground-truth episode: an activity bout, a sleep period, a stress episode or an illness."""

    kind: str
    start_minute: int  # from the participant's first minute, inclusive
    end_minute: int  # exclusive

    def as_dict(self) -> dict[str, str | int]:
        return {"kind": self.kind, "start_minute": self.start_minute, "end_minute": self.end_minute}


@dataclass
class MinuteRecord:
    """One participant's minutes: ``values`` is NaN exactly where ``mask`` is False."""

    values: np.ndarray  # (days, channels, 1440) float32: a day window is a channels x minutes grid
    mask: np.ndarray  # (days, channels, 1440) bool, True where observed (both may be transposed views)
    events: list[Event] = field(default_factory=list)
    start_weekday: int = 0  # 0 = Monday, for day 0

    @property
    def days(self) -> int:
        return int(self.values.shape[0])


def _smooth(signal: np.ndarray, alpha: float) -> np.ndarray:
    """First-order lag (exponential smoothing): physiology follows its drivers with inertia."""
    signal = np.asarray(signal, dtype=np.float32)
    smoothed: np.ndarray = lfilter(
        np.array([alpha], dtype=np.float32),
        np.array([1.0, alpha - 1.0], dtype=np.float32),
        signal,
        zi=np.array([signal[0] * (1.0 - alpha)], dtype=np.float32),
    )[0]
    return smoothed


def _red_noise(rng: np.random.Generator, length: int, alpha: float, scale: float) -> np.ndarray:
    """Slowly wandering noise with standard deviation ``scale``."""
    white = rng.standard_normal(length, dtype=np.float32)
    noise: np.ndarray = _smooth(white, alpha) * scale / np.sqrt(alpha / (2.0 - alpha))
    return noise


def _episodes(
    rng: np.random.Generator, eligible: np.ndarray, start_probability: float | np.ndarray, mean_length: float
) -> np.ndarray:
    """Random episodes: each eligible minute starts one with ``start_probability``; lengths are geometric."""
    length = eligible.shape[0]
    starts = np.flatnonzero((rng.random(length, dtype=np.float32) < start_probability) & eligible)
    ends = np.zeros(length, dtype=np.int64)
    ends[starts] = starts + rng.geometric(1.0 / mean_length, starts.size)
    return np.maximum.accumulate(ends) > np.arange(length)


def _sleep_stages(rng: np.random.Generator, length: int, age_years: float, fragmentation: float) -> np.ndarray:
    """Stages (1 light, 2 deep, 3 REM, 0 brief wakes) for one night of ``length`` minutes."""
    minute = np.arange(length)
    cycle_min = rng.uniform(80, 105)
    cycle = minute // cycle_min
    position = (minute % cycle_min) / cycle_min
    deep_fraction = np.maximum(0.02, (0.42 - 0.1 * cycle) * np.clip(1.35 - age_years / 90.0, 0.4, 1.2))
    rem_fraction = np.minimum(0.5, 0.1 + 0.07 * cycle)
    stage = np.ones(length, dtype=np.int8)
    stage[(position > 0.15) & (position < 0.15 + deep_fraction)] = 2
    stage[position > 1.0 - rem_fraction] = 3
    stage[: min(length, 8)] = 1  # sleep onset is light
    wakes = _episodes(rng, np.ones(length, dtype=bool), fragmentation / 60.0, 3.0)
    stage[wakes] = 0
    return stage


def simulate_minutes(
    traits: dict[str, float], days: int, rng: np.random.Generator, *, start_weekday: int = 0
) -> MinuteRecord:
    """Simulate ``days`` days of minute-level signals for one participant described by ``traits``.

    ``traits`` is :meth:`Traits.row` of :mod:`modeling.ml.data.traits`. The same generator state
    gives the same record, bit for bit.
    """
    total = days * MINUTES_PER_DAY
    minute = np.arange(total)
    minute_of_day = minute % MINUTES_PER_DAY
    weekday = (start_weekday + np.arange(days + 1)) % 7
    events: list[Event] = []
    age = traits["age_years"]
    rest_hr = traits["resting_heart_rate_bpm"]
    max_hr = 208.0 - 0.7 * age
    max_met = traits["vo2max"] / 3.5
    weight_kg = traits["bmi"] * traits["height_m"] ** 2
    sleep_quality = traits["sleep_quality"]

    # Illness: about one episode in ten two-week stays; fever, fast heart, low HRV, more sleep.
    illness = np.zeros(total, dtype=np.float32)
    if rng.random() < 0.1 * days / 14:
        first_day = int(rng.integers(0, days))
        duration_days = int(rng.integers(3, 8))
        severity = rng.uniform(0.5, 1.0)
        start, end = first_day * MINUTES_PER_DAY, min(total, (first_day + duration_days) * MINUTES_PER_DAY)
        illness[start:end] = severity
        events.append(Event("illness", start, end))

    # Sleep: night k ends on the morning of day k; free (weekend) mornings follow the chronotype.
    asleep = np.zeros(total, dtype=bool)
    stage = np.zeros(total, dtype=np.int8)
    off_wrist = np.zeros(total, dtype=bool)
    social_jetlag_h = np.clip(traits["chronotype_midsleep_h"] - 3.0, 0.0, 3.0) * 0.5
    fragmentation = max(
        0.3,
        1.2 - 0.6 * sleep_quality + traits["apnea_hypopnea_index"] / 25.0 + traits["alcohol_drinks_per_week"] / 30.0,
    )
    timing_sd_h = 0.4 + 0.35 * max(-sleep_quality, 0.0) + 0.15 * max(traits["stress"], 0.0)  # poor sleepers drift more
    for night in range(days + 1):
        free = weekday[night] >= 5
        mid_h = traits["chronotype_midsleep_h"] - (0.0 if free else social_jetlag_h) + rng.normal(0, timing_sd_h)
        day_index = min(night, days - 1)
        duration_h = (
            traits["sleep_need_h"]
            - (0.0 if free else 0.5 * social_jetlag_h + 0.3)
            + 0.45 * min(sleep_quality, 0.0)
            + 1.2 * illness[day_index * MINUTES_PER_DAY]
            + rng.normal(0, 0.75 - 0.15 * np.tanh(sleep_quality))
        )
        duration_h = float(np.clip(duration_h, 3.0, 12.0))
        start = int(night * MINUTES_PER_DAY + (mid_h - duration_h / 2) * 60)
        end = int(night * MINUTES_PER_DAY + (mid_h + duration_h / 2) * 60)
        clipped_start, clipped_end = max(start, 0), min(end, total)
        if clipped_end - clipped_start < 30:
            continue
        asleep[clipped_start:clipped_end] = True
        stage[clipped_start:clipped_end] = _sleep_stages(rng, end - start, age, fragmentation)[
            clipped_start - start : clipped_end - start
        ]
        events.append(Event("sleep", clipped_start, clipped_end))
        if rng.random() < (1.0 - traits["wear_compliance"]) * 0.8:
            off_wrist[clipped_start:clipped_end] = True
    awake = ~asleep
    stage[awake] = 0

    # Activity: leisure bouts by personal preference, weekday commutes, everyday ambulation.
    kind_of_minute = np.full(total, -1, dtype=np.int16)
    bout_intensity = np.ones(total, dtype=np.float32)
    preference_cdf = np.cumsum(rng.dirichlet(np.full(len(LEISURE_KINDS), 0.6)))
    preference_cdf[-1] = 1.0
    bouts_per_day = max(0.15, 0.8 + 0.5 * traits["activity_propensity"] - 0.3 * illness[::MINUTES_PER_DAY].mean())
    commute_kind = rng.choice(
        [-1, ACTIVITY_NAMES.index("commute_walk"), ACTIVITY_NAMES.index("commute_cycle")], p=[0.5, 0.35, 0.15]
    )
    for day in range(days):
        day_start = day * MINUTES_PER_DAY
        awake_minutes = np.flatnonzero(
            awake[day_start : day_start + MINUTES_PER_DAY] & (minute_of_day[:MINUTES_PER_DAY] > 300)
        )
        if awake_minutes.size < 60:
            continue
        planned = []
        if commute_kind >= 0 and weekday[day] < 5:
            first_awake = awake_minutes[0]
            planned += [
                (commute_kind, first_awake + int(rng.integers(30, 90))),
                (commute_kind, int(rng.integers(990, 1110))),
            ]
        leisure = rng.poisson(bouts_per_day * (1.3 if weekday[day] >= 5 else 1.0))
        if leisure:
            kinds = np.asarray(LEISURE_KINDS)[np.searchsorted(preference_cdf, rng.random(leisure))]
            starts = awake_minutes[rng.integers(0, awake_minutes.size, leisure)]
            planned += list(zip(kinds.tolist(), starts.tolist(), strict=True))
        for kind_index, start_of_day in planned:
            low, high = ACTIVITY_KINDS[kind_index].duration_min
            start = day_start + start_of_day
            end = min(start + int(rng.integers(low, high + 1)), day_start + MINUTES_PER_DAY)
            if end <= start or (kind_of_minute[start:end] >= 0).any() or not awake[start:end].all():
                continue
            kind_of_minute[start:end] = kind_index
            bout_intensity[start:end] = min(max(rng.normal(1.0 + 0.08 * traits["fitness"], 0.12), 0.6), 1.5)
            events.append(Event(ACTIVITY_NAMES[kind_index], int(start), int(end)))
    in_bout = kind_of_minute >= 0
    bout_kind = np.where(in_bout, kind_of_minute, 0)
    ambulating = _episodes(rng, awake & ~in_bout, max(0.003, 0.014 + 0.006 * traits["activity_propensity"]), 5.0)

    jitter = rng.random((2, total), dtype=np.float32)
    met = np.where(asleep, np.float32(0.95), 1.3 + 0.25 * jitter[0])
    met = np.where(ambulating, 2.5 + 0.6 * jitter[1], met)
    met = np.where(in_bout, _KIND_MET[bout_kind] * bout_intensity, met)
    met = np.minimum(met, max_met * 1.05)
    cadence = np.where(ambulating, 60.0 + 45.0 * jitter[0], np.float32(0.0))
    cadence = np.where(in_bout, _KIND_CADENCE[bout_kind] * np.sqrt(bout_intensity), cadence)

    # Stress episodes while awake and still.
    stress_rate = (0.9 + 0.7 * max(traits["stress"], 0.0) + 0.4 * max(traits["anxiety"], 0.0)) / 900.0
    stressed = _episodes(rng, awake & ~in_bout, stress_rate, 30.0)
    changes = np.diff(stressed.astype(np.int8), prepend=0, append=0)
    for stress_start, stress_end in zip(np.flatnonzero(changes == 1), np.flatnonzero(changes == -1), strict=True):
        events.append(Event("stress", int(stress_start), int(stress_end)))

    # Unit-variance triangular noise (two uniforms): close enough to Gaussian for sensor jitter and
    # about three times cheaper to draw, which keeps the simulator above 1,000 participant-days/s.
    uniforms = rng.random((2, 8, total), dtype=np.float32)
    noise = (uniforms[0] + uniforms[1] - 1.0) * np.float32(np.sqrt(6.0))
    circadian = np.tile(_CIRCADIAN, days)

    # Heart: reserve fraction from the metabolic load, lagged; lower in deep sleep.
    reserve = np.clip((met - 1.0) / max(max_met - 1.0, 1.0), 0.0, 1.0)
    stage_offset = np.array([0.0, -6.0, -9.0, -3.0], dtype=np.float32)[stage]
    heart_target = (
        np.where(asleep, rest_hr + stage_offset, rest_hr + 9.0 + 3.0 * circadian)
        + (max_hr - rest_hr) * reserve
        + 8.0 * stressed
        + 7.0 * illness
    )
    heart_rate = _smooth(heart_target, 0.35) + 2.2 * noise[0]
    if traits["atrial_fibrillation"]:
        heart_rate += 6.0 * np.abs(noise[1])

    # The slower heart of sleep already raises HRV; the stage adds only a little on top (deep sleep is
    # vagal, REM is not), so a night averages about 1.2-1.3 times the waking resting value, as measured.
    hrv_scale = np.exp(-0.028 * (heart_rate - rest_hr)) * np.array([1.0, 1.05, 1.15, 0.9], dtype=np.float32)[stage]
    hrv_scale *= (1.0 - 0.3 * stressed) * (1.0 - 0.3 * illness)
    rmssd = traits["rmssd_baseline_ms"] * hrv_scale * np.exp(0.18 * noise[2])
    sdnn = rmssd * (1.25 + 0.6 * reserve) * np.exp(0.12 * noise[3])
    if traits["atrial_fibrillation"]:
        # A wrist device drops most irregular beats before computing HRV, so atrial fibrillation shows as
        # an irregular component added in quadrature (a moderate, noisy rise), not the raw RR chaos of a
        # multiplied baseline that gave fit people 200-300 ms nights.
        irregular_ms = 30.0 * np.exp(0.3 * noise[1])
        rmssd = np.sqrt(rmssd**2 + irregular_ms**2)
        sdnn = np.sqrt(sdnn**2 + (1.5 * irregular_ms) ** 2)
    rr_median = 60000.0 / heart_rate
    rr_spread = 0.85 * sdnn * np.exp(0.1 * noise[4])

    # Movement.
    accel = np.where(
        in_bout,
        _KIND_ACCEL[bout_kind] * bout_intensity,
        np.where(ambulating, np.float32(150.0), np.where(asleep, np.float32(4.0), np.float32(25.0))),
    )
    accel = accel * np.exp(0.25 * noise[5])
    steps = np.round(cadence * np.exp(0.08 * noise[6]))
    zero_crossing = np.where(cadence > 0, cadence / 60.0, 0.15 * accel / 100.0) * np.exp(0.1 * noise[7])

    # Electrodermal activity: stress and sweat raise it, sleep lowers it.
    sweat = _smooth(reserve, 0.05)
    arousal = 0.9 * stressed + 0.6 * sweat + 0.15 * circadian + 0.2
    scl_base = float(np.exp(rng.normal(np.log(2.0), 0.6)))
    skin_conductance = scl_base * np.exp(_smooth(arousal, 0.08) - 0.5 * asleep + _red_noise(rng, total, 0.02, 0.15))
    response_rate = 0.2 + 4.0 * np.clip(arousal - 0.2, 0.0, None)
    eda_lability = np.maximum(np.round(response_rate + np.sqrt(response_rate) * noise[7]), 0.0)  # ~Poisson

    # Skin temperature: distal warming in sleep, sweat cooling, fever.
    asleep_lagged = _smooth(asleep.astype(float), 0.03)
    skin_temperature = (
        32.2
        + 0.3 * traits["female"]
        + 1.9 * asleep_lagged
        - 1.0 * sweat
        + 0.8 * illness
        + _red_noise(rng, total, 0.03, 0.35)
    )

    # Breathing and oxygen: apnea dips in sleep, faster breathing with load and fever.
    apnea_dips = _episodes(rng, asleep, traits["apnea_hypopnea_index"] / 60.0, 1.5)
    spo2 = 97.4 - 0.4 * asleep - apnea_dips * (3.0 + 7.0 * jitter[1]) + 0.5 * noise[1] - 0.8 * illness
    respiration = (
        np.where(asleep, 13.0 + 1.2 * (stage == 3), 15.0)
        + 10.0 * reserve
        + 2.5 * illness
        + 0.8 * noise[2] * np.where(stage == 3, 1.6, 1.0)
    )

    # Altimeter: climbing kinds plus the odd flight of stairs in daily life.
    stair_flights = _episodes(rng, awake & ~in_bout, 0.004, 1.0)
    altitude_gain = np.where(in_bout, _KIND_CLIMB[bout_kind] * bout_intensity, np.float32(0.0)) + stair_flights * (
        3.0 + 3.0 * jitter[0]
    )
    altitude_gain = np.maximum(altitude_gain * np.exp(0.2 * noise[3]), 0.0)

    sleep_probability = np.clip(_smooth(asleep.astype(float), 0.25) + 0.05 * noise[4], 0.0, 1.0)
    stress_score = 100.0 / (1.0 + np.exp(-(3.0 * (1.0 - rmssd / traits["rmssd_baseline_ms"]) + 1.2 * stressed - 0.6)))

    columns = {
        "heart_rate": heart_rate,
        "rr_median": rr_median,
        "rr_p20": rr_median - rr_spread,
        "rr_p80": rr_median + rr_spread,
        "rmssd": rmssd,
        "sdnn": sdnn,
        "steps": steps,
        "activity_counts": accel * 4.2 * np.exp(0.1 * noise[0]),
        "accel_magnitude": accel,
        "accel_jerk": accel / 90.0 * np.exp(0.15 * noise[6]),
        "accel_log_energy": np.log((accel / 1000.0) ** 2 + 1e-5),
        "zero_crossing_rate": zero_crossing,
        "met": met,
        "energy_expenditure": met * 3.5 * weight_kg / 200.0,
        "skin_conductance": skin_conductance,
        "skin_conductance_slope": np.diff(skin_conductance, prepend=skin_conductance[0]),
        "eda_lability": eda_lability,
        "skin_temperature": skin_temperature,
        "skin_temperature_slope": np.diff(skin_temperature, prepend=skin_temperature[0]),
        "spo2": np.minimum(spo2, 100.0),
        "respiration_rate": respiration,
        "sleep_stage": stage.astype(float),
        "sleep_probability": sleep_probability,
        "altitude_gain": altitude_gain,
        "floors": np.floor(altitude_gain / 3.0),
        "altimeter_std": 0.25 + 0.3 * altitude_gain + 0.05 * np.abs(noise[5]),
        "stress_score": stress_score,
    }
    # Filled channel-first, (channels, minutes), where every write is contiguous; the record exposes
    # it as day windows (days, channels, 1440) through a transposed view, without a copy.
    values = np.empty((NUM_FEATURES, total), dtype=np.float32)
    for name, column in columns.items():
        values[FEATURE_INDEX[name]] = column
    np.clip(values, _VALID_LOW[:, None], _VALID_HIGH[:, None], out=values)

    # Missingness: off-wrist nights, charging, showers, PPG dropouts, absent sensors.
    day_of_minute = minute // MINUTES_PER_DAY
    charging_day = rng.random(days) < 0.45
    charging_start = rng.integers(7 * 60, 21 * 60, days)
    charging_length = rng.integers(30, 100, days)
    charging = (
        charging_day[day_of_minute]
        & (minute_of_day >= charging_start[day_of_minute])
        & (minute_of_day < charging_start[day_of_minute] + charging_length[day_of_minute])
    )
    showers = _episodes(rng, awake & ~in_bout, 0.6 / 1000.0, 12.0)
    mask = np.empty((NUM_FEATURES, total), dtype=bool)
    mask[:] = ~(off_wrist | charging | showers)
    ppg_ok = ~_episodes(rng, np.ones(total, dtype=bool), 0.004 + 0.02 * (accel > 400), 4.0)
    for channel in [*_CARDIO, FEATURE_INDEX["stress_score"]]:
        mask[channel] &= ppg_ok
    mask[FEATURE_INDEX["stress_score"]] &= reserve <= 0.35  # not computed during exercise
    mask[FEATURE_INDEX["spo2"]] &= asleep  # measured in sleep only, as on most wrist devices
    mask[FEATURE_INDEX["respiration_rate"]] &= asleep
    if not traits["device_has_eda"]:
        mask[_EDA] = False
    if not traits["device_has_spo2"]:
        mask[FEATURE_INDEX["spo2"]] = False
    values[~mask] = np.nan

    events.sort(key=lambda event: (event.start_minute, event.kind))
    return MinuteRecord(
        values=values.reshape(NUM_FEATURES, days, MINUTES_PER_DAY).transpose(1, 0, 2),
        mask=mask.reshape(NUM_FEATURES, days, MINUTES_PER_DAY).transpose(1, 0, 2),
        events=events,
        start_weekday=start_weekday,
    )
