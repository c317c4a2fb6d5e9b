from tests.support.pyserver import ROOT, PyPerlbal  # noqa: F401  (moved to tests/support/pyserver.py)
