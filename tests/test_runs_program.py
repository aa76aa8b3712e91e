"""The run program's pieces that need no kernel: declared outputs (validation at publish and
collection after a run) and the bound on recorded values."""
from __future__ import annotations

from nbapps.notebook import load_notebook
from nbapps.runs.program import (
    MAX_RESULT_BYTES,
    bounded_records,
    collect_outputs,
    safe_output_name,
)
from nbapps.validation.rules import output_findings
from tests.nbfactory import make_notebook, write_notebook


def test_declared_outputs_are_checked_at_publish(tmp_path):
    nb = make_notebook(meta={"outputs": ["summary.csv", "out/chart.png", "../x", "/etc/passwd",
                                         "report.html", ".hidden", "summary.csv"]})
    app = load_notebook(write_notebook(nb, tmp_path / "app.ipynb"))
    found = [(f.code, f.message) for f in output_findings(app)]
    assert [c for c, _ in found] == ["NBA080"] * 4 + ["NBA082"]
    assert "'../x'" in found[0][1]
    assert [f.code for f in app.findings if f.code in ("NBA033", "NBA034")] == []
    assert output_findings(load_notebook(write_notebook(
        make_notebook(meta={"outputs": [f"f{i}.txt" for i in range(51)]}),
        tmp_path / "many.ipynb")))[0].code == "NBA081"


def test_collect_outputs_keeps_regular_files_within_the_limit(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    (work / "sub").mkdir(parents=True)
    (work / "a.csv").write_text("a")
    (work / "sub" / "b.txt").write_text("b" * 10)
    (work / "big.bin").write_bytes(b"x" * 100)
    (work / "link.txt").symlink_to(work / "a.csv")
    kept, findings = collect_outputs(["a.csv", "sub/b.txt", "big.bin", "link.txt", "gone.txt",
                                      "../a.csv"], work, out, max_bytes=50)
    assert kept == ["a.csv", "sub/b.txt"]
    assert (out / "outputs" / "sub" / "b.txt").read_text() == "b" * 10
    assert [f["code"] for f in findings] == ["NBA374"] * 4
    assert all(f["severity"] == "warning" for f in findings)
    assert safe_output_name("x\\y.csv") == "x/y.csv" and safe_output_name(3) is None


def test_recorded_values_are_bounded_together():
    values = {"small": 1, "huge": "x" * MAX_RESULT_BYTES, "after": [1, 2]}
    kept, findings = bounded_records(values)
    assert kept == {"small": 1, "after": [1, 2]}
    assert [f["code"] for f in findings] == ["NBA379"] and "'huge'" in findings[0]["message"]


def test_the_run_program_loads_no_catalog_and_no_cloud_client():
    """What a run program imports is paid by every run of a batch while both cores are busy:
    nothing of the gallery's catalog (SQLAlchemy) nor nbconvert (the gallery makes the HTML
    report from the executed notebook), and papermill without its S3 client (boto3), which the
    ``nbapps[s3]`` extra installs."""
    import subprocess
    import sys

    probe = ("import sys\n"
             "from nbapps.jobs.program import skip_cloud_clients\n"
             "skip_cloud_clients()\n"
             "from nbapps.runs import program\n"
             "from nbapps import execute, notebook, record\n"
             "import papermill.iorw\n"
             "print(sorted(m for m in ('sqlalchemy', 'boto3', 'botocore', 'nbapps.catalog',\n"
             "                         'nbconvert', 'jinja2')\n"
             "             if sys.modules.get(m) is not None))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
