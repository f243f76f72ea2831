"""A failing run cleans up only what it made (issue 14, item 3)."""

import os

from helpers import write_points
from qgis_helpers import run_failing

from povmap_qgis.core.atomic import RUN_ID_VARIABLE, atomic_output, run_partials

UTM = "EPSG:32642"


def test_unfinished_files_are_named_for_the_run_that_owns_them(tmp_path, monkeypatch):
    output = str(tmp_path / "grid.gpkg")
    other_run = tmp_path / ".grid.partial-222-bbbbbbbb-123456.gpkg"
    other_run.write_text("another run's cells")
    monkeypatch.setenv(RUN_ID_VARIABLE, "111-aaaaaaaa")
    with atomic_output(output) as mine:
        open(mine, "w").close()
        open(mine + "-journal", "w").close()
        assert run_partials(output, "111-aaaaaaaa") == [mine, mine + "-journal"]
        assert run_partials(output, "222-bbbbbbbb") == [str(other_run)]
        assert run_partials(output, "111-aaaaaaa") == []  # not a prefix match
        os.remove(mine + "-journal")
    assert sorted(os.listdir(tmp_path)) == sorted([other_run.name, "grid.gpkg"])


def test_a_failing_run_leaves_a_concurrent_runs_partial_output_alone(povmap_provider, tmp_path):
    points = write_points(
        tmp_path / "p.gpkg", [600100.0, 600200], [2800100.0] * 2, UTM, score=[5, 6]
    )
    output = tmp_path / "grid.gpkg"
    # What a concurrent run writing the same output has on disk at this moment.
    other_file = tmp_path / ".grid.partial-4242-0123abcd-5e6f7a.gpkg"
    other_file.write_bytes(b"half of another run's grid")
    (tmp_path / (other_file.name + "-journal")).write_bytes(b"")
    other_folder = tmp_path / ".grid.partial-4343-89abcdef-0a1b2c.gpkg"
    other_folder.mkdir()

    message = run_failing(
        "povmap:buildtraininggrid",
        {"INPUT": str(points), "SCORE_FIELD": "score", "MIN_OBS": 5, "OUTPUT": str(output)},
    )

    assert "MIN_OBS" in message  # the worker failed, so the adapter cleaned up after it
    assert other_file.read_bytes() == b"half of another run's grid"
    assert (tmp_path / (other_file.name + "-journal")).exists() and other_folder.is_dir()
    assert not output.exists()
