"""The test suite (a package, so that pytest names every test module by its path from the checkout
and puts the checkout, not a test directory, on sys.path: ``tests.support`` imports the same way
under ``pytest`` and ``python -m pytest``, and ``tests/datasets`` no longer shadows the ``datasets``
library)."""
