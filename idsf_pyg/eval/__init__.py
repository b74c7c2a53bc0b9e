"""Evaluation: ranking metrics and the full-ranking evaluator."""
from .evaluator import DEFAULT_KS, FullRankingEvaluator, deterministic_topk, evaluator_for, topk_to_rows
from .metrics import METRICS

__all__ = ["DEFAULT_KS", "FullRankingEvaluator", "METRICS", "deterministic_topk", "evaluator_for", "topk_to_rows"]
