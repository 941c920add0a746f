"""The main job, from one experiment file: `rarecast run` and :func:`run_experiment`."""

from rarecast.experiment.file import Experiment, load_experiment
from rarecast.experiment.job import RunResult, run_experiment

__all__ = ["Experiment", "RunResult", "load_experiment", "run_experiment"]
