"""Parts of ``nbapps validate``: static rules (:mod:`.rules`) and report rendering
(:mod:`.render`). The public entry points are in :mod:`nbapps.validate`."""
