"""Secrets in sources and outputs (NBA050/051) and stored output size (NBA060)."""
from __future__ import annotations

import base64
import hashlib
import time
import uuid
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_output

from nbapps.validate import ValidationSettings, validate_notebook
from tests.nbfactory import make_notebook, write_notebook

STATIC = ValidationSettings(execute=False)

# Built at run time so that this file itself holds no secret-looking literal.
AWS_KEY = "AKIA" + "IOSFODNN7" + "EXAMPLE"
SLACK = "xoxb-" + "123456789012-1234567890123-" + "abcdefghijABCDEFGHIJabcd"
GITHUB = "ghp_" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7c"
PRIVATE_KEY = "-----BEGIN " + "RSA PRIVATE KEY-----"
DB_URL = "postgresql://analyst:" + "Tr0ub4dor-3x" + "@db.example.com/sales"


def check(tmp_path: Path, nb, settings: ValidationSettings = STATIC):
    return validate_notebook(write_notebook(nb, tmp_path / "app.ipynb"), settings)


def codes(report) -> list[str]:
    return [f.code for f in report.findings]


def cell_with_output(source: str, *outputs) -> object:
    return new_code_cell(source, outputs=list(outputs), execution_count=1)


def stream(text: str):
    return new_output("stream", name="stdout", text=text)


def data(mime: str, value: str):
    return new_output("display_data", data={mime: value})


@pytest.mark.parametrize("source, kind", [
    (f'key_id = "{AWS_KEY}"', "AWS Access Key"),
    (f'client = WebClient(token="{SLACK}")', "Slack Token"),
    (f'gh = Github("{GITHUB}")', "GitHub Token"),
    (f'pem = """{PRIVATE_KEY}\nMIIE..."""', "Private Key"),
    (f'engine = create_engine("{DB_URL}")', "Basic Auth Credentials"),
    ('password = "' + "correct-horse-battery" + '"', "Secret Keyword"),
])
def test_secret_in_source(tmp_path: Path, source: str, kind: str):
    report = check(tmp_path, make_notebook(extra=[source]))
    assert codes(report) == ["NBA050"], report.findings
    finding = report.findings[0]
    assert kind in finding.message and finding.cell == 2
    for secret in (AWS_KEY, SLACK, GITHUB, "Tr0ub4dor", "correct-horse"):
        assert secret not in finding.message
        assert secret not in (finding.cell_line or "") or finding.cell_line == source[:80]


def test_secret_in_source_cell_line_is_only_the_cells_first_line(tmp_path: Path):
    report = check(tmp_path, make_notebook(extra=[f"import boto3\nkey = '{AWS_KEY}'"]))
    assert report.findings[0].cell_line == "import boto3"
    assert "line 2" in report.findings[0].message


@pytest.mark.parametrize("output, label", [
    (stream(f"connecting with {SLACK}\n"), "stream stdout"),
    (data("text/plain", f"{{'token': '{GITHUB}'}}"), "text/plain"),
    (data("text/html", f"<td>{AWS_KEY}</td>"), "text/html"),
    (new_output("error", ename="AuthError", evalue="bad credentials",
                traceback=["\x1b[0;31mAuthError\x1b[0m", f"url = '{DB_URL}'"]), "error"),
])
def test_secret_in_stored_output(tmp_path: Path, output, label: str):
    nb = make_notebook(extra=[cell_with_output("connect()", output)])
    report = check(tmp_path, nb)
    assert codes(report) == ["NBA051"], report.findings
    assert f"output 1 ({label})" in report.findings[0].message
    assert report.findings[0].cell == 2


def test_allowlist_pragma_is_honoured(tmp_path: Path):
    nb = make_notebook(extra=[f'example = "{AWS_KEY}"  # pragma: allowlist secret'])
    assert check(tmp_path, nb).findings == []


def test_ordinary_analysis_notebook_has_no_secret_findings(tmp_path: Path):
    """Hashes, ids, base64 images, IPs and pandas tables are data, not secrets."""
    digests = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(20)]
    md5s = [hashlib.md5(str(i).encode()).hexdigest() for i in range(20)]  # noqa: S324
    ids = [str(uuid.UUID(int=i * 7919 + 12345)) for i in range(20)]
    table = "<table>\n" + "".join(
        f"<tr><th>{i}</th><td>{digests[i]}</td><td>{ids[i]}</td><td>{i * 1.5:.2f}</td></tr>\n"
        for i in range(20)) + "</table>"
    plain = "\n".join(f"{i:>3}  {md5s[i]}  {ids[i]}  {i * 3.14159:.5f}" for i in range(20))
    png = base64.b64encode(bytes(range(256)) * 40).decode()
    nb = make_notebook(extra=[
        "import pandas as pd\nimport numpy as np\nimport hashlib\n",
        'df = pd.read_csv("sales.csv", parse_dates=["date"])\n'
        'df["key"] = df["id"].map(lambda s: hashlib.sha256(s.encode()).hexdigest())\n'
        'token_count = len(df)\npassword_column = df.columns[3]\nsecret_santa = df.sample(3)\n'
        'api_url = "https://api.example.com/v1/data?format=json"\n'
        'plt.style.use("seaborn-v0_8")\nserver = "10.1.2.3"\n',
        cell_with_output("df.describe()", new_output(
            "execute_result", data={"text/html": table, "text/plain": plain},
            execution_count=1)),
        cell_with_output("df.plot()", new_output("display_data", data={
            "image/png": png, "text/plain": "<Figure size 640x480 with 1 Axes>"})),
        cell_with_output("print(df.shape)", stream("(1000, 12)\nHost 192.168.1.20 / 8.8.8.8\n"
                                                   "sha1 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"
                                                   "\n")),
        'password = getpass.getpass("Password: ")\ntoken = os.environ["API_TOKEN"]\n',
        f"commit = '{digests[0]}'  # data version\nrun_id = '{ids[1]}'\n",
    ])
    assert check(tmp_path, nb).findings == []


def test_large_outputs_are_reported_fast(tmp_path: Path):
    """A 20 MB output: NBA060 naming the cell, quickly, and the notebook is otherwise checked."""
    big = "0123456789 abcdefghij " * (20 * 1024 * 1024 // 22)
    nb = make_notebook(extra=[cell_with_output("print(huge)", stream(big)),
                              cell_with_output("x", stream(f"{SLACK}\n"))])
    start = time.perf_counter()
    report = check(tmp_path, nb)
    elapsed = time.perf_counter() - start
    assert codes(report) == ["NBA060", "NBA051"]
    size = report.findings[0]
    assert size.cell == 2 and "20.0 MB" in size.message and "5.0 MB limit" in size.message
    assert elapsed < 20, f"20 MB output took {elapsed:.1f} s"


def test_output_limit_is_a_setting(tmp_path: Path):
    nb = make_notebook(extra=[cell_with_output("x", stream("a" * 300_000))])
    assert check(tmp_path, nb).findings == []
    tight = ValidationSettings(execute=False, max_output_bytes=100_000)
    report = check(tmp_path, nb, tight)
    assert codes(report) == ["NBA060"] and "293 KB" in report.findings[0].message
    assert "98 KB limit" in report.findings[0].message


def test_image_outputs_count_towards_the_size(tmp_path: Path):
    png = base64.b64encode(b"\x00" * 600_000).decode()
    nb = make_notebook(extra=[cell_with_output("plot()", data("image/png", png))])
    report = check(tmp_path, nb, ValidationSettings(execute=False, max_output_bytes=500_000))
    assert codes(report) == ["NBA060"]


def test_secret_scans_in_threads_of_one_process_all_find_the_key():
    """detect-secrets keeps its settings in one global: scans in threads once raised
    ``KeyError: 'AWSKeyDetector'`` or "dictionary changed size" (``make demo`` validates its
    apps in threads, each scan beside its kernel run). Many short GIL switches make the race
    show within a few scans when scans do not take turns."""
    import sys
    import threading

    from nbapps.secrets_scan import scan_notebook

    nb = make_notebook(params=None, widget=None,
                       extra=[new_code_cell(f'key_id = "{AWS_KEY}"\n'
                                            + "".join(f"label_{i} = 'row {i}'\n"
                                                      for i in range(300)))])
    found: list[list[str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def scan() -> None:
        start.wait()
        try:
            for _ in range(3):
                found.append([hit.kind for hit in scan_notebook(nb)])
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=scan) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert found == [["AWS Access Key"]] * 24
