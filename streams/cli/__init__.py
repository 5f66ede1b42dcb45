"""The ``shadowcanary`` command line: ``main`` holds the group and the entry point, one module per
command group (``python -m streams.cli`` runs it)."""
