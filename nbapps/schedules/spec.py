"""Reading and checking ``metadata.nbapps.schedules``, and the times a schedule fires.

A schedule is ``{"name", "cron", "timezone"?, "parameters"?}`` (see :mod:`nbapps.schedules`).
:func:`parse_schedules` never raises for bad metadata: every problem is a
:class:`~nbapps.findings.Finding` (NBA085-NBA089) and only the schedules without an error are
returned. croniter computes the times, in the schedule's own time zone (``zoneinfo``), so
"06:00 Europe/Paris" stays 06:00 local across daylight-saving changes.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from ..findings import Finding
from ..metadata_lists import capped_mappings

#: a schedule's name: like an app slug, at most this long
MAX_NAME = 64
NAME_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
MAX_CRON = 200
#: schedules one version may declare
MAX_SCHEDULES = 20
KEYS = ("name", "cron", "timezone", "parameters")
#: croniter's shorthands that name a regular time (``@reboot`` has none)
ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_PARAM_CODES = ("NBA101", "NBA102", "NBA103")


@dataclass(frozen=True)
class Schedule:
    """One valid schedule of a version."""

    name: str
    cron: str
    timezone: str = "UTC"
    parameters: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def seconds(self) -> bool:
        """Whether the expression has a leading seconds field (6 fields): fires within a
        minute, so galleries run it only with ``schedule_allow_seconds`` (tests)."""
        return len(self.cron.split()) == 6

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "cron": self.cron, "timezone": self.timezone,
                "parameters": dict(self.parameters)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schedule:
        return cls(name=str(data["name"]), cron=str(data["cron"]),
                   timezone=str(data.get("timezone") or "UTC"),
                   parameters=dict(data.get("parameters") or {}))


def _iterator(cron: str, start: datetime) -> croniter:
    return croniter(cron, start, second_at_beginning=len(cron.split()) == 6)


def cron_problem(cron: str) -> str | None:
    """Why ``cron`` is not a usable expression (5 fields, 6 with leading seconds, or one of
    :data:`ALIASES`), or None."""
    text = cron.strip()
    if not text:
        return "is empty"
    if len(text) > MAX_CRON:
        return f"is longer than {MAX_CRON} characters"
    fields = text.split()
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            return f"uses an unknown shorthand (known: {', '.join(ALIASES)})"
    elif len(fields) not in (5, 6):
        return (f"has {len(fields)} fields; give 5 (minute hour day-of-month month "
                "day-of-week)")
    try:
        it = _iterator(text, datetime(2000, 1, 1, tzinfo=timezone.utc))
        it.get_next(datetime)
    except CroniterError as exc:
        message = str(exc)
        if "failed to find next date" in message:
            return "never matches a date (e.g. 31 February)"
        return f"is not valid ({message})"
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        return f"is not valid ({exc})"
    return None


def zone(name: str) -> ZoneInfo | None:
    """The IANA time zone ``name``, or None when unknown."""
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def next_times(schedule: Schedule, after: datetime, n: int = 1) -> list[datetime]:
    """The next ``n`` times ``schedule`` fires strictly after ``after`` (aware), as aware UTC
    datetimes. ValueError for a naive ``after`` or a schedule that is not valid."""
    if after.tzinfo is None:
        raise ValueError("next_times needs an aware datetime")
    tz = zone(schedule.timezone)
    if tz is None:
        raise ValueError(f"unknown time zone {schedule.timezone!r}")
    it = _iterator(schedule.cron, after.astimezone(tz))
    out = []
    for _ in range(max(0, int(n))):
        out.append(it.get_next(datetime).astimezone(timezone.utc))
    return out


def parse_schedules(raw: Any, contract: Any = None) -> tuple[list[Schedule], list[Finding]]:
    """The valid schedules of ``metadata.nbapps.schedules`` and the findings about the rest.

    ``contract`` (a :class:`~nbapps.contract.ParameterContract`, or None to skip the check)
    checks each schedule's ``parameters`` (NBA089). A 6-field expression is valid but gets the
    NBA086 warning: whether it runs is the gallery's setting.
    """
    schedules: list[Schedule] = []
    entries, findings = capped_mappings(raw, field="schedules", code="NBA085",
                                        too_many_code="NBA085", limit=MAX_SCHEDULES,
                                        shape="`name` and `cron`")
    seen: set[str] = set()
    for index, item in entries:
        where = f"schedules[{index}]"
        name = item.get("name")
        if isinstance(name, str) and name:
            where = f"schedule {name!r}"
        problems = _entry_problems(item, where)
        if problems:
            findings += problems
            continue
        name = str(item["name"])
        if name in seen:
            findings.append(Finding("NBA085", f"{where}: the name is used twice; names must "
                                    "be unique within the notebook"))
            continue
        seen.add(name)
        cron = " ".join(str(item["cron"]).split())
        problem = cron_problem(cron)
        if problem is not None:
            findings.append(Finding("NBA087", f"{where}: cron `{cron}` {problem}"))
            continue
        tz_name = item.get("timezone") or "UTC"
        if zone(str(tz_name)) is None:
            findings.append(Finding("NBA088", f"{where}: unknown time zone {tz_name!r}"))
            continue
        parameters = dict(item.get("parameters") or {})
        if contract is not None:
            bad = [(code, message) for code, message in contract.problems(parameters)
                   if code in _PARAM_CODES]
            if bad:
                findings += [Finding("NBA089", f"{where}: {message}") for _code, message in bad]
                continue
            parameters = contract.check(parameters)
        schedule = Schedule(name=name, cron=cron, timezone=str(tz_name), parameters=parameters)
        if schedule.seconds:
            findings.append(Finding("NBA086", f"{where}: cron `{cron}` has a seconds field; "
                                    "a gallery runs it only if its admin allows seconds "
                                    "schedules"))
        schedules.append(schedule)
    return schedules, findings


def _entry_problems(item: Mapping[str, Any], where: str) -> list[Finding]:
    out: list[Finding] = []
    unknown = sorted(str(k) for k in item if k not in KEYS)
    if unknown:
        out.append(Finding("NBA085", f"{where}: unknown key(s) {', '.join(unknown)}; known: "
                           + ", ".join(KEYS)))
    name = item.get("name")
    if not isinstance(name, str) or not name:
        out.append(Finding("NBA085", f"{where}: `name` (a string) is missing"))
    elif len(name) > MAX_NAME or NAME_RE.fullmatch(name) is None:
        out.append(Finding("NBA085", f"{where}: the name must be lowercase letters, digits and "
                           f"single '-' (at most {MAX_NAME} characters)"))
    if not isinstance(item.get("cron"), str):
        out.append(Finding("NBA085", f"{where}: `cron` (a string such as \"0 6 * * *\") is "
                           "missing"))
    tz_name = item.get("timezone")
    if tz_name is not None and not isinstance(tz_name, str):
        out.append(Finding("NBA085", f"{where}: `timezone` must be a string"))
    params = item.get("parameters")
    if params is not None and not isinstance(params, Mapping):
        out.append(Finding("NBA085", f"{where}: `parameters` must be a mapping of parameter "
                           "name to value"))
    return out


__all__ = ["ALIASES", "MAX_SCHEDULES", "Schedule", "cron_problem", "next_times",
           "parse_schedules", "zone"]
