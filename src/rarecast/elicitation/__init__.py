"""Elicitation: behaviors and graders, and the scoring loop that measures each query's probability."""
