"""The prose of the algorithms' help, apart from their code: one module per algorithm.

``help/<algorithm id>.py`` holds the algorithm's ``SUMMARY`` and the help of each of its
parameters under the parameter's id (``MIN_OBS = "Cells with fewer households …"``);
``PovmapAlgorithm`` reads them (``help_texts``) and translates them with its ``tr``.
Prose several algorithms share lives in ``common.py``. The page of each algorithm,
docs/algorithms/<algorithm id>.md, says the same in more words: change both together.
"""
