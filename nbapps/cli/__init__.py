"""The ``nbapps`` command line: a thin layer over the library (see :mod:`nbapps.cli.main`)."""
