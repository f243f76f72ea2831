"""What the worker environment can do (Python, key packages, GPU)."""

from __future__ import annotations

import contextlib
import importlib
import platform
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..progress import Reporter


PACKAGES = (
    "numpy",
    "pandas",
    "geopandas",
    "pyogrio",
    "shapely",
    "pyproj",
    "rasterio",
    "sklearn",
    "matplotlib",
    "tensorflow",
    "mlflow",  # the run history (core/history/tracking.py); mlflow-skinny
)
# Training on a GPU uses Keras's mixed precision (core/model/member_fitting.py); on the CPU it does not.
MIXED_PRECISION_POLICY = "mixed_float16"


def describe_environment(
    reporter: Reporter | None = None, check_gpu: bool = True
) -> dict[str, Any]:
    description: dict[str, Any] = {
        "python": sys.executable,
        "python_version": platform.python_version(),
        "packages": {},
    }
    for name in PACKAGES:
        try:
            module = importlib.import_module(name)
            description["packages"][name] = getattr(module, "__version__", "installed")
        except Exception as error:  # a broken install is worth reporting, not crashing on
            description["packages"][name] = (
                None if isinstance(error, ModuleNotFoundError) else f"broken: {error}"
            )
    description["gpus"] = []
    description["gpu_memory"] = nvidia_gpu_memory()
    tensorflow_version = str(description["packages"].get("tensorflow") or "")
    if check_gpu and tensorflow_version and not tensorflow_version.startswith("broken"):
        import tensorflow

        description["gpus"] = [
            device.name for device in tensorflow.config.list_physical_devices("GPU")
        ]
        description["tensorflow_cuda"] = bool(tensorflow.test.is_built_with_cuda())
    description["mixed_precision"] = MIXED_PRECISION_POLICY if description["gpus"] else "off"
    return description


def tensorflow_device() -> str | None:
    """The device TensorFlow computes on in this process, as it names it: ``CPU``, or its GPUs
    (``GPU:0 NVIDIA H200``); None when the process has not imported TensorFlow (the step did
    not use it). Recorded as the ``device`` param of a run (core/history/tracking.py)."""
    tensorflow = sys.modules.get("tensorflow")
    if tensorflow is None:
        return None
    gpus = tensorflow.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    names = []
    for gpu in gpus:
        try:
            details = tensorflow.config.experimental.get_device_details(gpu) or {}
        except Exception:  # details are a nicety; the device name is what TensorFlow uses
            details = {}
        label = gpu.name.removeprefix("/physical_device:")
        names.append(f"{label} {details['device_name']}" if details.get("device_name") else label)
    return ", ".join(names)


def nvidia_gpu_memory() -> list[list[Any]]:
    """[(name, total MiB)] of the NVIDIA GPUs nvidia-smi lists; [] without the tool or a GPU."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        listing = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found: list[list[Any]] = []
    for line in listing.splitlines():
        name, _, memory = line.rpartition(",")
        if name.strip() and memory.strip().isdigit():
            found.append([name.strip(), int(memory)])
    return found


def limit_tensorflow_threads(cpus: int) -> None:
    """TensorFlow's thread pools sized to ``cpus``, before it starts them (a Spark task's cores)."""
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):  # already initialised in this worker
        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(cpus)


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory for the next batch instead of handing it back at once.

    Predicting allocates and frees arrays of several MB for every batch of chips (normalised
    inputs, the statistics' float64 planes, TensorFlow's tensors); by default glibc serves
    each from fresh pages (mmap above its threshold) and returns the top of the heap to the
    system, so every batch pays for zeroing pages again: a third of a predicting process's
    CPU was the kernel's. Serving allocations up to 32 MB from the heap and trimming it only
    past 1 GB: predicting 10,000 cells from the rasters took 39–42 s instead of 43–49 s on
    2 cores (system time 5.4–6.5 → 2.3 s; peak memory the same, ~1 GB; at 501,264 cells 1.67
    instead of 1.53 GB: freed memory stays up to the trim threshold). Process-wide; a no-op
    where the C library has no ``mallopt`` (not glibc) or the platform is not Linux.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    trim_threshold, mmap_threshold = -1, -3  # glibc's M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
    mallopt(mmap_threshold, 32 * 2**20)  # glibc's largest (HEAP_MAX_SIZE / 2 on 64-bit)
    mallopt(trim_threshold, 2**30)
