"""Help of povmap:checkenvironment; docs/algorithms/checkenvironment.md says the same in more words.

Its SUMMARY, then each parameter's help under the parameter's id, in the dialog's order.
"""

SUMMARY = (
    "Starts the worker process and reports its Python, the versions of the packages the pipeline needs, "
    "the TensorFlow version, whether a GPU is visible (with its memory) and whether training uses mixed "
    "precision there. A GPU needs TensorFlow's GPU build: scripts/setup installs it when nvidia-smi lists a "
    "GPU, or with scripts/setup --gpu. Set the worker Python in Settings ▸ Options ▸ "
    "Processing ▸ Providers ▸ Poverty mapping, or with the POVMAP_PYTHON environment variable."
)
