"""Writers of small export files in each source format, with identifiers planted in them.

The tests write these files themselves (nothing is shipped), import them, and check that what
should arrive does and that none of the planted identifiers does.
"""

import json
import zipfile
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

PLANTED = {
    "name": "Johanna Quinteros-Testperson",
    "email": "johanna.quinteros@example.org",
    "serial": "SERIAL-FB-7731-XQ",
    "free_text": "lives at 12 Harbour Lane and works nights at the bakery",
    "participant_id": "MRN-00042-QT",
    "birth_date": "1979-04-17",
}
START = date(2024, 3, 4)  # a Monday
DAYS = 3


def _heart_rate(minute: int) -> float:
    hour = (minute % 1440) / 60
    return 58.0 + 20.0 * (8 <= hour < 22) + 5.0 * np.sin(minute / 50.0)


def write_csv_long(
    folder: Path, *, participants=(PLANTED["participant_id"], "MRN-00077-ZX"), unit_column=True
) -> dict[str, Path]:
    """A long signals file, a demographics file (with a name and e-mail column) and measurements."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["participant_id,timestamp,channel,value" + (",unit" if unit_column else "")]
    for participant in participants:
        for minute in range(0, DAYS * 1440, 5):
            moment = datetime.combine(START, datetime.min.time()) + timedelta(minutes=minute)
            stamp = moment.strftime("%Y-%m-%dT%H:%M:00-05:00")
            lines.append(
                f"{participant},{stamp},heart_rate,{_heart_rate(minute):.1f}" + (",bpm" if unit_column else "")
            )
            lines.append(
                f"{participant},{stamp},steps,{40 if 600 <= minute % 1440 < 640 else 0}"
                + (",steps/min" if unit_column else "")
            )
            if unit_column:
                lines.append(f"{participant},{stamp},skin_temperature,{91.5:.1f},degF")
    signals = folder / "signals.csv"
    signals.write_text("\n".join(lines) + "\n")
    demographics = folder / "participants.csv"
    demographics.write_text(
        "participant_id,name,email,age,sex,notes\n"
        + "\n".join(
            f"{p},{PLANTED['name']},{PLANTED['email']},{47 + i},{'F' if i == 0 else 'M'},{PLANTED['free_text']}"
            for i, p in enumerate(participants)
        )
        + "\n"
    )
    measurements = folder / "measurements.csv"
    measurements.write_text(
        "participant_id,timestamp,name,value,unit\n"
        + "\n".join(
            f"{p},2024-01-15T09:00:00,systolic_bp,{131 + i},mmHg\n{p},2024-03-05T09:00:00,weight,{180 + i},lb"
            for i, p in enumerate(participants)
        )
        + "\n"
    )
    return {"signals": signals, "demographics": demographics, "measurements": measurements}


def write_csv_wide(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["participant_id,timestamp,heart_rate,steps,spo2"]
    for minute in range(0, DAYS * 1440, 10):
        stamp = (datetime.combine(START, datetime.min.time()) + timedelta(minutes=minute)).strftime("%Y-%m-%d %H:%M")
        lines.append(f"WIDE-SUBJECT-31,{stamp},{_heart_rate(minute):.1f},{3},{96.5 if minute % 1440 < 360 else ''}")
    path = folder / "wide.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _fitbit_files(*, user_id: str) -> dict[str, bytes]:
    files = {}
    for day in range(DAYS):
        current = START + timedelta(days=day)
        heart = [
            {
                "dateTime": (datetime.combine(current, datetime.min.time()) + timedelta(seconds=15 * i)).strftime(
                    "%m/%d/%y %H:%M:%S"
                ),
                "value": {"bpm": round(_heart_rate(day * 1440 + i // 4)), "confidence": 2},
            }
            for i in range(4 * 1440)
        ]
        steps = [
            {
                "dateTime": (datetime.combine(current, datetime.min.time()) + timedelta(minutes=i)).strftime(
                    "%m/%d/%y %H:%M:%S"
                ),
                "value": str(30 if 600 <= i < 630 else 0),
            }
            for i in range(1440)
        ]
        night_start = datetime.combine(current, datetime.min.time()) - timedelta(hours=1)
        sleep = [
            {
                "logId": 1,
                "dateOfSleep": current.isoformat(),
                "startTime": night_start.isoformat(),
                "mainSleep": True,
                "type": "stages",
                "levels": {
                    "data": [
                        {"dateTime": night_start.isoformat(timespec="milliseconds"), "level": "light", "seconds": 3600},
                        {
                            "dateTime": (night_start + timedelta(hours=1)).isoformat(timespec="milliseconds"),
                            "level": "deep",
                            "seconds": 5400,
                        },
                        {
                            "dateTime": (night_start + timedelta(hours=2.5)).isoformat(timespec="milliseconds"),
                            "level": "rem",
                            "seconds": 3600,
                        },
                        {
                            "dateTime": (night_start + timedelta(hours=3.5)).isoformat(timespec="milliseconds"),
                            "level": "wake",
                            "seconds": 600,
                        },
                    ]
                },
            }
        ]
        files[f"Fitbit/Global Export Data/heart_rate-{current.isoformat()}.json"] = json.dumps(heart).encode()
        files[f"Fitbit/Global Export Data/steps-{current.isoformat()}.json"] = json.dumps(steps).encode()
        files[f"Fitbit/Global Export Data/sleep-{current.isoformat()}.json"] = json.dumps(sleep).encode()
    files["Fitbit/Your Profile/Profile.csv"] = (
        "id,full_name,email_address,date_of_birth,gender,about_me,device_serial\n"
        f"{user_id},{PLANTED['name']},{PLANTED['email']},{PLANTED['birth_date']},FEMALE,{PLANTED['free_text']},{PLANTED['serial']}\n"
    ).encode()
    return files


def write_fitbit_folder(folder: Path, *, user_id: str = "FITBITUSER9") -> Path:
    for name, content in _fitbit_files(user_id=user_id).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return folder


def write_fitbit_zip(path: Path, *, user_id: str = "FITBITUSER7") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in _fitbit_files(user_id=user_id).items():
            archive.writestr(name, content)
    return path


def apple_xml(*, with_phone_duplicates: bool = True) -> str:
    watch = f"{PLANTED['name']}’s Apple Watch"
    phone = f"{PLANTED['name']}’s iPhone"
    records = []
    for day in range(DAYS):
        base = datetime.combine(START + timedelta(days=day), datetime.min.time())
        for minute in range(0, 1440, 5):
            moment = base + timedelta(minutes=minute)
            stamp = moment.strftime("%Y-%m-%d %H:%M:%S -0500")
            records.append(
                f'<Record type="HKQuantityTypeIdentifierHeartRate" sourceName="{watch}" sourceVersion="10.1" '
                f'device="&lt;&lt;HKDevice: name:Apple Watch, serial:{PLANTED["serial"]}&gt;&gt;" unit="count/min" '
                f'creationDate="{stamp}" startDate="{stamp}" endDate="{stamp}" value="{_heart_rate(day * 1440 + minute):.0f}"/>'
            )
        for hour in (9, 17):
            start = base + timedelta(hours=hour)
            end = start + timedelta(minutes=10)
            span = f'startDate="{start:%Y-%m-%d %H:%M:%S} -0500" endDate="{end:%Y-%m-%d %H:%M:%S} -0500"'
            records.append(
                f'<Record type="HKQuantityTypeIdentifierStepCount" sourceName="{watch}" unit="count" {span} value="1000"/>'
            )
            if with_phone_duplicates:
                records.append(
                    f'<Record type="HKQuantityTypeIdentifierStepCount" sourceName="{phone}" unit="count" {span} value="950"/>'
                )
        night = base - timedelta(hours=1)
        for offset_h, length_h, value in (
            (0, 2, "AsleepCore"),
            (2, 1.5, "AsleepDeep"),
            (3.5, 1, "AsleepREM"),
            (4.5, 0.25, "Awake"),
        ):
            start = night + timedelta(hours=offset_h)
            end = start + timedelta(hours=length_h)
            records.append(
                f'<Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="{watch}" '
                f'startDate="{start:%Y-%m-%d %H:%M:%S} -0500" endDate="{end:%Y-%m-%d %H:%M:%S} -0500" '
                f'value="HKCategoryValueSleepAnalysis{value}"/>'
            )
        records.append(
            f'<Record type="HKQuantityTypeIdentifierOxygenSaturation" sourceName="{watch}" unit="%" '
            f'startDate="{base:%Y-%m-%d} 02:00:00 -0500" endDate="{base:%Y-%m-%d} 02:00:00 -0500" value="0.96"/>'
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE HealthData [\n<!ELEMENT HealthData (ExportDate,Me,(Record)*)>\n]>\n'
        '<HealthData locale="en_US">\n <ExportDate value="2024-03-08 10:00:00 -0500"/>\n'
        f' <Me HKCharacteristicTypeIdentifierDateOfBirth="{PLANTED["birth_date"]}" HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexFemale" '
        'HKCharacteristicTypeIdentifierBloodType="HKBloodTypeNotSet"/>\n '
        + "\n ".join(records)
        + f'\n <Workout workoutActivityType="HKWorkoutActivityTypeWalking" sourceName="{watch}"><MetadataEntry key="note" value="{PLANTED["free_text"]}"/></Workout>'
        + "\n</HealthData>\n"
    )


def write_apple_xml(path: Path, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(apple_xml(**options), encoding="utf-8")
    return path


def write_apple_zip(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("apple_health_export/export.xml", apple_xml())
    return path
