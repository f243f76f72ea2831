"""The prose of the algorithms' help, apart from their code: one module per algorithm.

``help/<algorithm id>.py`` holds the algorithm's ``SUMMARY`` and the help of each of its
parameters under the parameter's id (``MIN_OBS = "Cells with fewer households …"``);
``PovmapAlgorithm`` reads them (``help_texts``) and translates them with its ``tr``.
Prose several algorithms share lives in ``common.py``. The "Parameters" section of each
algorithm's page, docs/algorithms/<algorithm id>.md, is generated from these texts and the
parameters' definitions by scripts/make_algorithm_docs.py (tests/test_algorithm_docs.py
fails when a page is out of date); the rest of the page says more in its own words.
"""
