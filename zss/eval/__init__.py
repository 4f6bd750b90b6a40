"""Evaluation and inference: vocabularies, slide/whole inference, mmseg-exact metrics, benchmark
readers, `zss eval` (`run_eval`) and `zss segment` (`run_segment`). See docs/eval.md."""

from zss.eval.benchmarks import BENCHMARKS, PAPER_ORDER, get_benchmark
from zss.eval.evaluate import run_eval
from zss.eval.inference import InferenceConfig, Predictor
from zss.eval.metrics import SegMetric
from zss.eval.segment import run_segment
from zss.formats.vocab import Vocabulary

__all__ = ["BENCHMARKS", "PAPER_ORDER", "get_benchmark", "run_eval", "InferenceConfig", "Predictor",
           "SegMetric", "run_segment", "Vocabulary"]
