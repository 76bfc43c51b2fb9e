"""Clinical scores from a history record: higher for the riskier person, by the published directions."""

from modeling.ml.twin.scores import ENDPOINT_SCORES, clinical_scores
from modeling.ml.twin.tokens import ParticipantRecord


def _record(age, *, smoker, systolic, ldl, hba1c, egfr, weight, events=()):
    values = {
        "systolic_bp": systolic,
        "diastolic_bp": 80.0,
        "ldl": ldl,
        "hdl": 50.0,
        "triglycerides": 130.0,
        "hba1c": hba1c,
        "fasting_glucose": 95.0,
        "egfr": egfr,
        "weight": weight,
    }
    return ParticipantRecord(
        age_years=age,
        sex="male",
        smoker=smoker,
        measurements=[{"day": 10, "name": n, "value": v} for n, v in values.items()],
        events=[{"day": 5, "kind": "medication", "name": name} for name in events],
        last_day=364,
    )


def test_every_score_ranks_the_riskier_person_higher():
    healthy = clinical_scores(
        _record(42, smoker=False, systolic=115, ldl=100, hba1c=5.2, egfr=100, weight=70), height_m=1.78
    )
    at_risk = clinical_scores(
        _record(68, smoker=True, systolic=158, ldl=200, hba1c=6.1, egfr=52, weight=105, events=("antihypertensive",)),
        height_m=1.78,
    )
    assert set(healthy) == set(ENDPOINT_SCORES) and len(ENDPOINT_SCORES) >= 10
    assert all(at_risk[endpoint] > healthy[endpoint] for endpoint in ENDPOINT_SCORES), (healthy, at_risk)


def test_findrisc_counts_high_glucose_only_when_measured():
    """Never measured is "never told of high glucose": 0 of FINDRISC's 5 points, not the population fill value."""

    def record(*glucose):
        return ParticipantRecord(
            age_years=40,
            sex="female",
            smoker=False,
            last_day=100,
            measurements=[{"day": 3, "name": "weight", "value": 60.0}]
            + [{"day": day, "name": "fasting_glucose", "value": value} for day, value in glucose],
        )

    assert clinical_scores(record(), height_m=1.7)["incident_diabetes"] == 0.0
    assert clinical_scores(record((20, 92.0), (80, 104.0)), height_m=1.7)["incident_diabetes"] == 5.0
    assert (
        clinical_scores(record((20, 104.0), (80, 92.0)), height_m=1.7)["incident_diabetes"] == 0.0
    )  # the latest value counts
