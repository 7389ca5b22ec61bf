"""Benchmarks of generalization: a suite of tasks kept out of meta-training, baselines tuned per
task, and scores aggregated the way the field reports learned optimizers.

    suite    the suite file (``heldout.toml``), its tasks, and the check that keeps them out
             of meta-training (``check_not_heldout``)
    run      tuning and evaluation cells, cached in a folder and resumed
    scores   normalized scores, interquartile means, stratified bootstrap intervals
    report   results.json, results.md, profile.png
    speed    a step's cost on a one-million-parameter model, against Adam's

    phys-l2o bench heldout --optimizers hnn-mnist runs/mine.pt --out runs/bench
"""

from .report import score_methods, write_report
from .run import Method, run_method, run_suite, suite_methods
from .scores import aggregate, iqm, iqm_difference, normalize, scored_loss, stratified_bootstrap
from .speed import default_factories, step_costs
from .suite import Suite, SuiteError, SuiteTask, check_not_heldout, load_suite, parse_suite

__all__ = ["Method", "Suite", "SuiteError", "SuiteTask", "aggregate", "check_not_heldout",
           "default_factories", "iqm", "iqm_difference", "load_suite", "normalize",
           "parse_suite", "run_method", "run_suite", "score_methods", "scored_loss",
           "step_costs", "stratified_bootstrap", "suite_methods", "write_report"]
