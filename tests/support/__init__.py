"""Reusable test helpers: free ports, a Perl Perlbal runner and console client,
a scripted HTTP backend, and raw-socket HTTP helpers.  Import as
``from tests.support.<module> import ...``."""
