"""povmap:checkenvironment — what the worker Python can do (TensorFlow, GPU)."""

from qgis.core import QgsProcessingOutputBoolean, QgsProcessingOutputString

from .base import PovmapAlgorithm


class CheckEnvironment(PovmapAlgorithm):
    GPU = "GPU"
    PYTHON = "PYTHON"
    TENSORFLOW = "TENSORFLOW"
    GPUS = "GPUS"
    GPU_MEMORY = "GPU_MEMORY"
    MIXED_PRECISION = "MIXED_PRECISION"

    algorithm_id = "checkenvironment"
    display_name = "Check worker environment"
    group_id = "models"
    group_name = "3 · Models"

    def initAlgorithm(self, config=None):
        for key, label in (
            (self.PYTHON, "Worker Python"),
            (self.TENSORFLOW, "TensorFlow version"),
            (self.GPUS, "GPUs visible"),
            (self.GPU_MEMORY, "GPU memory (nvidia-smi)"),
            (self.MIXED_PRECISION, "Mixed precision in training"),
        ):
            self.addOutput(QgsProcessingOutputString(key, self.tr(label)))
        self.addOutput(QgsProcessingOutputBoolean(self.GPU, self.tr("A GPU is visible")))

    def processAlgorithm(self, parameters, context, feedback):
        description = self.run_core_step("environment", {}, feedback)
        packages = description["packages"]
        for name, version in packages.items():
            feedback.pushInfo(f"{name}: {version or 'NOT INSTALLED'}")
        gpus = description.get("gpus") or []
        feedback.pushInfo(f"Python {description['python_version']} at {description['python']}")
        feedback.pushInfo(
            f"GPU: {', '.join(gpus) if gpus else 'none visible (training and prediction run on the CPU)'}"
        )
        memory = "; ".join(f"{name}: {mib} MiB" for name, mib in description.get("gpu_memory", []))
        if memory:
            feedback.pushInfo(f"GPU memory: {memory}")
        feedback.pushInfo(
            f"Mixed precision in training: {description.get('mixed_precision', 'off')}"
        )
        if description.get("gpu_memory") and not gpus:
            feedback.pushWarning(
                "nvidia-smi lists a GPU but TensorFlow does not see it: install TensorFlow's GPU "
                "build in the worker environment (scripts/setup --gpu)."
            )
        missing = [
            name
            for name, version in packages.items()
            if not version or str(version).startswith("broken")
        ]
        if missing:
            feedback.pushWarning(
                f"Missing or broken in the worker environment: {', '.join(missing)}; run scripts/setup or install requirements.txt there."
            )
        return {
            self.PYTHON: description["python"],
            self.TENSORFLOW: packages.get("tensorflow") or "not installed",
            self.GPUS: ", ".join(gpus),
            self.GPU: bool(gpus),
            self.GPU_MEMORY: memory,
            self.MIXED_PRECISION: description.get("mixed_precision", "off"),
        }
