"""Benchmarks of generalization: a suite of tasks kept out of meta-training, baselines tuned per
task, and scores aggregated the way the field reports learned optimizers.

    suite    the suite file (``heldout.toml``), its tasks, and the check that keeps them out
             of meta-training (``check_not_heldout``)
    scores   normalized scores, interquartile means, stratified bootstrap intervals
    run      tuning and evaluation cells, cached in a folder and resumed (``run_suite``)
    report   results.json, results.md, profile.png (``write_report``)
    speed    a step's cost on a one-million-parameter model, against Adam's (``step_costs``)

The package exports the suite and the scores; meta-training reads them (to refuse held-out
tasks), so running a suite (``run``, ``report``, ``speed``, which use meta-training's
evaluation) is imported from its module:

    phys-l2o bench heldout --optimizers hnn-mnist runs/mine.pt --out runs/bench
"""

from .scores import aggregate, iqm, iqm_difference, normalize, scored_loss, stratified_bootstrap
from .suite import Suite, SuiteError, SuiteTask, check_not_heldout, load_suite, parse_suite

__all__ = ["Suite", "SuiteError", "SuiteTask", "aggregate", "check_not_heldout", "iqm",
           "iqm_difference", "load_suite", "normalize", "parse_suite", "scored_loss",
           "stratified_bootstrap"]
