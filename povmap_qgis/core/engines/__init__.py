"""Engines: where the heavy steps run (this process, or Apache Spark tasks).

They sit above the steps they run: ``steps.py`` hands ``sampling.sample_chips`` and
``prediction.predict`` the engine their options name; the steps import no engine.
"""
