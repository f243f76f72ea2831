"""scripts/kill_campaign.py: kill -9 at random moments, rerun, nothing lost (issue 14).

The quick run here (about 35 s): one seeded kill of qgis_process running povmap:samplechips
while its worker runs (a worker that could outlive its qgis_process). It checks the
campaign's machinery end to end; the fixes it exercises have their own tests
(test_run_cleanup.py, test_runner.py, test_chips_core.py). The full campaign (10 kills per
long algorithm, any process) is run by hand; its numbers are in docs/reliability.md.
"""

import os
import subprocess
import sys

from conftest import ROOT


def test_a_kill_of_sample_chips_leaves_nothing_and_the_rerun_equals_an_uninterrupted_run(
    tiny_sample, tmp_path
):
    environment = dict(os.environ, POVMAP_PYTHON=sys.executable)
    completed = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "scripts", "kill_campaign.py"),
            "--kills",
            "1",
            "--algorithms",
            "samplechips",
            "--seed",
            "3",
            "--no-determinism",
            "--targets",
            "qgis_process",
            "--during-worker",
            "--sample",
            tiny_sample,
            "--work",
            str(tmp_path / "campaign"),
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    printed = completed.stdout + completed.stderr
    assert completed.returncode == 0, printed
    summary = next(line for line in printed.splitlines() if line.startswith("samplechips  "))
    cells = summary.split()
    # kills, rerun identical, partials / locks / exports left, ok (from the end of the row)
    assert cells[3] == "1" and cells[-5] == "1/1" and cells[-4:-1] == ["0", "0", "0"]
    assert cells[-1] == "1/1"
    assert "inputs unchanged (sha256): yes" in printed
