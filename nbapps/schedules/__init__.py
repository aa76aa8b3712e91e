"""Schedules: approved apps re-run on a cron schedule, keeping their reports fresh.

A notebook declares its schedules in its metadata::

    "nbapps": {"schedules": [{"name": "nightly", "cron": "0 6 * * *",
                              "timezone": "Europe/Paris", "parameters": {"region": "EU"}}]}

* ``name``: unique within the notebook, slug-like (lowercase letters, digits, single ``-``).
* ``cron``: 5 fields (minute hour day-of-month month day-of-week) or a shorthand such as
  ``@daily``; a 6-field form with a *leading seconds* field (``*/2 * * * * *``: every 2 s) is
  accepted with the NBA086 warning and runs only on a gallery configured with
  ``c.NbappsServer.schedule_allow_seconds = True`` (meant for tests).
* ``timezone``: an IANA name (default ``UTC``); times follow local daylight saving.
* ``parameters``: optional values, checked against the parameter contract like
  ``test_parameters`` (NBA089).

``nbapps validate``, publish and the gallery's own check report problems (NBA085-NBA089,
:func:`parse_schedules`); the reviewer sees the schedules and their next times with the version
and approves them with it. When a version goes live (approval, rollback) its schedules replace
the app's (:mod:`nbapps.catalog.schedules`; by name, a schedule keeps an admin's pause and a
*broken* state, which only its next passing run clears). The gallery's
:class:`~nbapps.schedules.scheduler.Scheduler` claims due schedules in the catalog (a
conditional update, so one replica of several fires each time once), queues a run of the live
version (``origin="schedule"``) and reads its outcome: a failure marks the app *broken* with the
run's findings, is retried with exponential backoff and POSTs a JSON notification to
``c.NbappsServer.schedule_webhook_url``; the next success clears it.
"""
from __future__ import annotations

from .spec import ALIASES, MAX_SCHEDULES, Schedule, cron_problem, next_times, parse_schedules

__all__ = ["ALIASES", "MAX_SCHEDULES", "Schedule", "cron_problem", "next_times",
           "parse_schedules"]
