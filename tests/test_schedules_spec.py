"""``metadata.nbapps.schedules``: parsing, the NBA085-NBA089 findings of ``nbapps validate``,
next times across daylight saving, and the gallery-derived manifest carrying them."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import nbformat
import pytest

from nbapps.contract import ParameterContract
from nbapps.schedules import Schedule, next_times, parse_schedules
from nbapps.validate import ValidationSettings, validate_notebook
from tests.nbfactory import make_notebook, write_notebook

NIGHTLY = {"name": "nightly", "cron": "0 6 * * *", "timezone": "Europe/Paris",
           "parameters": {"label": "y"}}


def codes(findings) -> list[str]:
    return [f.code for f in findings]


def contract() -> ParameterContract:
    return ParameterContract.from_dict([
        {"name": "n", "type": "int", "default": 3, "min": 0, "max": 10},
        {"name": "label", "type": "str", "default": "x", "choices": ["x", "y"]}])


def test_a_valid_schedule_is_read_with_defaults():
    schedules, findings = parse_schedules([NIGHTLY, {"name": "hourly", "cron": "@hourly"}],
                                          contract())
    assert findings == []
    assert schedules == [Schedule("nightly", "0 6 * * *", "Europe/Paris", {"label": "y"}),
                         Schedule("hourly", "@hourly", "UTC", {})]
    assert schedules[0].parameters == {"label": "y"} and not schedules[0].seconds


@pytest.mark.parametrize(("entry", "code", "words"), [
    ("nightly", "NBA085", "must be a mapping"),
    ({"cron": "0 6 * * *"}, "NBA085", "`name`"),
    ({"name": "Night Run", "cron": "0 6 * * *"}, "NBA085", "lowercase"),
    ({"name": "n", "cron": 6}, "NBA085", "`cron`"),
    ({"name": "n", "cron": "0 6 * * *", "every": "day"}, "NBA085", "unknown key(s) every"),
    ({"name": "n", "cron": "0 6 * * *", "parameters": ["y"]}, "NBA085", "`parameters`"),
    ({"name": "n", "cron": "0 6 * *"}, "NBA087", "has 4 fields"),
    ({"name": "n", "cron": "61 6 * * *"}, "NBA087", "not valid"),
    ({"name": "n", "cron": "0 6 31 2 *"}, "NBA087", "never matches"),
    ({"name": "n", "cron": "@reboot"}, "NBA087", "shorthand"),
    ({"name": "n", "cron": "H 6 * * *"}, "NBA087", "not valid"),
    ({"name": "n", "cron": "0 6 * * *", "timezone": "Europe/Atlantis"}, "NBA088", "Atlantis"),
    ({"name": "n", "cron": "0 6 * * *", "timezone": "../../etc/passwd"}, "NBA088", "unknown"),
    ({"name": "n", "cron": "0 6 * * *", "parameters": {"region": "EU"}}, "NBA089",
     "unknown parameter"),
    ({"name": "n", "cron": "0 6 * * *", "parameters": {"n": "3"}}, "NBA089", "expects int"),
    ({"name": "n", "cron": "0 6 * * *", "parameters": {"n": 11}}, "NBA089", "maximum"),
    ({"name": "n", "cron": "0 6 * * *", "parameters": {"label": "z"}}, "NBA089", "allowed"),
])
def test_each_problem_has_its_code_and_says_what(entry, code, words):
    schedules, findings = parse_schedules([entry], contract())
    assert schedules == [] and codes(findings) == [code]
    assert words in findings[0].message


def test_duplicate_names_and_seconds_fields():
    schedules, findings = parse_schedules(
        [NIGHTLY, dict(NIGHTLY, cron="@daily"), {"name": "fast", "cron": "*/2 * * * * *"}],
        contract())
    assert codes(findings) == ["NBA085", "NBA086"]
    assert "used twice" in findings[0].message
    assert [s.name for s in schedules] == ["nightly", "fast"] and schedules[1].seconds
    assert not findings[1].is_error  # a warning: whether it runs is the gallery's setting


def test_next_times_follow_the_time_zone_across_daylight_saving():
    paris = ZoneInfo("Europe/Paris")
    sched = Schedule("nightly", "0 6 * * *", "Europe/Paris")
    times = next_times(sched, datetime(2026, 3, 27, 12, tzinfo=timezone.utc), 3)
    assert [t.astimezone(paris).hour for t in times] == [6, 6, 6]
    assert [t.hour for t in times] == [5, 4, 4]  # CET, then CEST from 29 March
    fast = Schedule("fast", "*/2 * * * * *")
    start = datetime(2026, 1, 1, 0, 0, 1, tzinfo=timezone.utc)
    assert [t.second for t in next_times(fast, start, 3)] == [2, 4, 6]
    with pytest.raises(ValueError):
        next_times(sched, datetime(2026, 1, 1), 1)


def test_validate_reports_schedules_and_accepts_the_field(tmp_path):
    nb = make_notebook(meta={"schedules": [NIGHTLY, {"name": "bad", "cron": "0 25 * * *"},
                                           {"name": "fr", "cron": "@daily",
                                            "parameters": {"n": "three"}}]})
    report = validate_notebook(write_notebook(nb, tmp_path / "app.ipynb"),
                               ValidationSettings(execute=False))
    found = [f for f in report.findings if f.code.startswith("NBA08")]
    assert codes(found) == ["NBA087", "NBA089"]
    assert "NBA034" not in codes(report.findings)  # `schedules` is a known field
    wrong = make_notebook(meta={"schedules": {"name": "x"}})
    report = validate_notebook(write_notebook(wrong, tmp_path / "w.ipynb"),
                               ValidationSettings(execute=False))
    assert "NBA033" in codes(report.findings)


def test_the_gallery_derived_manifest_carries_the_schedules():
    from nbapps.jobs.source import derive_manifest
    from nbapps.store import StoredSource, sha256_of

    nb = make_notebook(meta={"schedules": [NIGHTLY]})
    data = nbformat.writes(nb).encode()
    stored = StoredSource(sha256=sha256_of(data), key="k", size=len(data))
    manifest = derive_manifest({"app.ipynb": data}, stored)
    assert manifest["schedules"] == [NIGHTLY]
