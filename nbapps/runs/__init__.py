"""Runs of approved versions (issue 14): the gallery side.

* :mod:`nbapps.catalog.runs` queues runs (contract and approval checked first) and reads them;
* :mod:`.program` the program run in confinement for one run (``python -m nbapps.runs.program``);
* :mod:`.report` the HTML report of a run (what the app shows, widgets from the saved state);
* :mod:`.worker` one run job: the confined program, its deadline, the artifacts as blobs;
* :mod:`.pdf` the PDF of a run's report, printed on its first download (outside the
  confinement, by :mod:`nbapps.report_pdf`);
* :mod:`.pool` the pool of run workers over the shared job queue, with retention (runs and
  the blobs only they used).
"""
