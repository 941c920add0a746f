"""The results store (SQLite, resumable, provenance on every row) and the score files read beside it."""

from rarecast.store.database import Run, RunKey, Store, StoredRow, check_store_file, load_scores, open_existing

__all__ = ["Run", "RunKey", "Store", "StoredRow", "check_store_file", "load_scores", "open_existing"]
