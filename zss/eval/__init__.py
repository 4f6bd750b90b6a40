"""Evaluation and inference: vocabularies, slide/whole inference, mmseg-exact metrics, benchmark
readers, `zss eval` (`run_eval`) and `zss segment` (`run_segment`). See docs/eval.md.

The names below load on first use, so a light submodule (`zss.eval.prepare`, `zss.eval.benchmarks`)
does not pay for torch and the models."""

from importlib import import_module
from typing import Any

_WHERE = {"BENCHMARKS": "benchmarks", "PAPER_ORDER": "benchmarks", "get_benchmark": "benchmarks",
          "run_eval": "evaluate", "InferenceConfig": "inference", "Predictor": "inference",
          "SegMetric": "metrics", "run_segment": "segment"}

__all__ = ["BENCHMARKS", "PAPER_ORDER", "get_benchmark", "run_eval", "InferenceConfig", "Predictor",
           "SegMetric", "run_segment", "Vocabulary"]


def __getattr__(name: str) -> Any:
    if name == "Vocabulary":
        from zss.formats.vocab import Vocabulary

        return Vocabulary
    if name in _WHERE:
        return getattr(import_module(f"zss.eval.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'zss.eval' has no attribute {name!r}")
