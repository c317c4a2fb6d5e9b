"""perlbal check --perl: our extensions (Param.beyond_perl) are errors, because
Perl Perlbal 1.80 refuses those lines -- which is checked against Perl itself --
and configs Perl accepts (the wild corpus) raise none of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from perlbal.check import check_paths
from perlbal.params import REGISTRY
from tests.check.test_wild_configs import WILD
from tests.support.perl_perlbal import PerlPerlbal, console, perl_perlbal_available
from tests.support.ports import free_ports

OURS_SERVICE = sorted(n for n, p in REGISTRY.service.items() if p.beyond_perl)
OURS_SERVER = sorted(n for n, p in REGISTRY.server.items() if p.beyond_perl)


#: values our interpreter accepts for the ones without a usable default
_VALUES = {"workers": "2", "metrics": "on", "log_level": "info", "access_log_format": "combined",
           "reproxy_file_roots": "/tmp"}


def _value(name: str, server: bool) -> str:
    param = (REGISTRY.server if server else REGISTRY.service)[name]
    return _VALUES.get(name) or param.default or "1"


@pytest.mark.skipif(not perl_perlbal_available(), reason="Perl Perlbal not installed")
def test_perl_refuses_every_parameter_flagged_as_ours() -> None:
    assert OURS_SERVICE and OURS_SERVER
    (mgmt,) = free_ports(1)
    with PerlPerlbal("CREATE SERVICE rp\n  SET role = reverse_proxy\n", mgmt_port=mgmt):
        with console("127.0.0.1", mgmt) as con:
            for name in OURS_SERVICE:
                reply = con.command(f"SET rp.{name} = {_value(name, False)}")
                assert reply == [f"ERROR: Unknown service parameter '{name}'"], name
            for name in OURS_SERVER:
                reply = con.command(f"SERVER {name} = {_value(name, True)}")
                assert reply[0].startswith("ERROR: unknown server option"), (name, reply)
            # and a Perl parameter next to them is fine (the session works)
            assert con.command("SET rp.persist_backend = on") == ["OK"]


def test_check_perl_names_each_extension(tmp_path: Path) -> None:
    ours = [f"  SET {name} = {_value(name, False)}" for name in OURS_SERVICE
            if name not in ("access_log", "ssl_sni_certs")
            and REGISTRY.service[name].applies_to("reverse_proxy")]
    ours += [f"SERVER {name} = {_value(name, True)}" for name in OURS_SERVER
             if name not in ("user", "error_log")]
    lines = ["CREATE SERVICE rp", "  SET role = reverse_proxy", "  SET listen = 127.0.0.1:1",
             *ours, "ENABLE rp"]
    conf = tmp_path / "ours.conf"
    conf.write_text("\n".join(lines) + "\n")
    plain = check_paths([str(conf)])
    assert not plain.errors, plain.errors  # our own server accepts all of it
    strict = check_paths([str(conf)], perl=True)
    flagged = [d for d in strict.errors if d.message.startswith("Perl Perlbal 1.80 has no")]
    assert [d.line for d in flagged] == list(range(4, 4 + len(ours)))


def test_configs_perl_accepts_raise_no_extension_errors() -> None:
    files = sorted(p for p in WILD.glob("*") if p.suffix in (".conf", "") and p.is_file()
                   and p.name != "EXPECTED.tsv")
    if not files:
        pytest.skip("wild-configs corpus not present")
    for path in files:
        result = check_paths([str(path)], perl=True)
        assert not [d for d in result.errors
                    if d.message.startswith("Perl Perlbal 1.80 has no")], path
