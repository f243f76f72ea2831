"""scripts/setup chooses TensorFlow's build: the GPU build when nvidia-smi lists a GPU or
with --gpu, tensorflow-cpu otherwise. (No GPU here: nvidia-smi is a script made below that
prints what the real one prints for a GPU; the install itself is not run.)"""

import os
import subprocess

from conftest import ROOT

SETUP = os.path.join(ROOT, "scripts", "setup")


def plan(*arguments, path_first=None):
    environment = dict(os.environ)
    if path_first:
        environment["PATH"] = f"{path_first}:{environment['PATH']}"
    return subprocess.run(
        [SETUP, "--dry-run", *arguments], capture_output=True, text=True, env=environment
    )


def fake_nvidia_smi(folder, listing):
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' '{listing}'\n")
    script.chmod(0o755)
    return folder


def test_cpu_build_without_a_gpu_and_gpu_build_when_nvidia_smi_lists_one(tmp_path):
    assert "TensorFlow build: cpu (tensorflow-cpu)" in plan().stdout
    gpu = fake_nvidia_smi(tmp_path, "GPU 0: NVIDIA H200 (UUID: GPU-0)")
    assert "TensorFlow build: gpu (tensorflow[and-cuda])" in plan(path_first=gpu).stdout


def test_nvidia_smi_without_a_gpu_listed_keeps_the_cpu_build(tmp_path):
    no_gpu = fake_nvidia_smi(tmp_path, "No devices were found")
    assert "TensorFlow build: cpu" in plan(path_first=no_gpu).stdout


def test_options_override_the_detection(tmp_path):
    gpu = fake_nvidia_smi(tmp_path, "GPU 0: NVIDIA H200 (UUID: GPU-0)")
    assert "TensorFlow build: cpu" in plan("--cpu", path_first=gpu).stdout
    assert "TensorFlow build: gpu" in plan("--gpu").stdout
    refused = plan("--gpus")
    assert refused.returncode == 2 and "unknown option '--gpus'" in refused.stderr


def test_both_builds_are_pinned_to_one_release():
    pins = {}
    with open(os.path.join(ROOT, "constraints.txt"), encoding="utf-8") as handle:
        for line in handle:
            if "==" in line and not line.startswith("#"):
                name, version = line.strip().split("==")
                pins[name] = version
    assert pins["tensorflow"] == pins["tensorflow-cpu"]
