"""Queries: the query type and its files, sets built from templates, and sets written by a model."""

from rarecast.queries.query import Query, load_queries, stable_id

__all__ = ["Query", "load_queries", "stable_id"]
