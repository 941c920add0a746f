"""A corpus of bad input files for every rarecast loader and command, generated (see corpus.py)."""
