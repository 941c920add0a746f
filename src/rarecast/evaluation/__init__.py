"""Evaluation: backtests on scored pools, red-team allocation, and synthetic families with exact truths."""
