"""povmap:checkenvironment on the GPU side: memory from nvidia-smi, mixed precision, and the
warning when a GPU is present but the worker has TensorFlow's CPU build (as here)."""

import os

from qgis_helpers import run_algorithm


def test_a_gpu_tensorflow_cannot_see_is_reported_with_its_memory_and_what_to_install(
    povmap_provider, tmp_path, monkeypatch
):
    fake = tmp_path / "nvidia-smi"  # prints what the real tool prints for one H200
    fake.write_text(
        "#!/bin/sh\n"
        'case "$*" in *--query-gpu*) echo "NVIDIA H200, 143771";; '
        '*) echo "GPU 0: NVIDIA H200 (UUID: GPU-0)";; esac\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    results, feedback = run_algorithm("povmap:checkenvironment", {})
    assert results["GPU_MEMORY"] == "NVIDIA H200: 143771 MiB"
    assert results["GPU"] is False and results["MIXED_PRECISION"] == "off"
    assert "scripts/setup --gpu" in " ".join(feedback.warnings)


def test_without_a_gpu_mixed_precision_is_off_and_nothing_is_warned(povmap_provider):
    results, feedback = run_algorithm("povmap:checkenvironment", {})
    assert results["GPU_MEMORY"] == "" and results["MIXED_PRECISION"] == "off"
    assert not [warning for warning in feedback.warnings if "GPU" in warning]
