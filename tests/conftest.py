"""Shared pytest fixtures.  Helpers themselves live in tests/support/."""

from __future__ import annotations

import pytest

from tests.support.perl_perlbal import perl_perlbal_available


@pytest.fixture
def need_perl_perlbal() -> None:
    """Skip the test when /usr/bin/perlbal (the Perl reference) is missing."""
    if not perl_perlbal_available():
        pytest.skip("/usr/bin/perlbal (Perl Perlbal) not installed")
