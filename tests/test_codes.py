from __future__ import annotations

import re

from nbapps.codes import CODES, Severity
from nbapps.errors import NbappsError, ParameterError
from nbapps.findings import Finding


def test_codes_are_well_formed_and_unique():
    assert CODES, "the code table is empty"
    for code, entry in CODES.items():
        assert re.fullmatch(r"NBA\d{3}", code), code
        assert entry.code == code
        assert isinstance(entry.severity, Severity)
        assert entry.title and entry.fix


def test_error_carries_code_and_hint():
    err = ParameterError("unknown parameter 'x'", code="NBA101")
    assert err.to_dict()["error"] == "NBA101"
    assert err.exit_code == 2 and err.http_status == 400
    assert err.hint == CODES["NBA101"].fix
    assert isinstance(err, NbappsError)


def test_finding_defaults_from_table():
    f = Finding("NBA005", "upgraded from v3")
    assert f.severity is Severity.WARNING and not f.is_error
    assert Finding.from_dict(f.to_dict()) == f


def test_readme_lists_every_code():
    """The README's error table is generated from the code table; regenerate it when this fails
    (``python -m nbapps.codes``)."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    missing = [code for code in CODES if f"| {code} |" not in readme]
    assert not missing, f"README.md lacks these codes: {missing}"
