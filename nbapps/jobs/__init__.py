"""Background work of the gallery: the check run of every submitted version (and, later, runs).

DESIGN.md decision 7: everything a reviewer or a viewer sees of a version is derived by the
gallery from the source it stores. This package does that work:

* :mod:`.source` what a version's source is and the manifest the gallery derives from it;
* :mod:`.check` the program run in confinement for one check (validation with execution,
  executed notebook with widget state, thumbnail, parameter contract, per-cell timings);
* :mod:`.worker` one check job: a private folder, the confined subprocess, its deadline and a
  hard kill of its process tree, the artifacts stored as content-addressed blobs;
* :mod:`.artifacts` artifact names, limits and how readers load them;
* :mod:`.pool` the bounded pool of worker threads over the catalog's durable job queue
  (:mod:`nbapps.catalog.jobs`), started and stopped with the gallery.
"""
