"""Emotion analysis of recordings: the faces in images, videos and cameras.

    from mre_jax.analysis import Analyzer
    result = Analyzer.from_model("runs/raf/studentC").analyze("test.mp4")
    result.write("analysis/")  # emotions.csv, summary.json, timeline.png...

``result.rows`` holds one dict per face per analysed frame (the columns of
``emotions.csv``), ``result.summary`` the contents of ``summary.json``.
``python -m mre_jax.analyze`` is the command line. Modules: ``sources``
(frames), ``detection`` and ``tracking`` (faces), ``classifier`` (the model),
``smoothing``, ``moments``, ``valence`` and ``summary`` (what the rows add
up to), ``events`` and ``tasks`` (the tasks of a recording),
``participant`` (``faces="main"``), ``table`` (the CSV), ``outputs``
(writing), ``timeline``, ``report_html``, ``report_tasks`` and
``html_parts`` (the pictures and the page), ``analyzer`` and
``frame_pass`` (the pass over the frames). ``python -m mre_jax.study``
analyses a whole study with ``study_sessions`` (who and what),
``study_state`` (what is already done), ``study_runner`` (the sessions, in
parallel if asked), ``study_table``, ``study_charts``, ``study_report`` and
``study_outputs`` (study.csv and study.html). Nothing here imports the
training code.
"""

import os

# Before OpenCV loads: FFmpeg's messages about damaged frames (which the
# analysis skips and counts) and OpenCV's camera-probing warnings would
# otherwise interleave with the analysis's own output.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

_API = {"Analyzer": "analyzer", "AnalysisResult": "analyzer",
        "Settings": "analyzer"}


def __getattr__(name):
  """The API, imported when first used (it brings in JAX)."""
  if name in _API:
    import importlib  # pylint: disable=g-import-not-at-top
    module = importlib.import_module(f"{__name__}.{_API[name]}")
    return getattr(module, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_API)
