"""Reporting: results.json, markdown tables and plots, from cell records. Generic: the methods'
display names and order come from the caller (``phys_l2o.experiments.report`` writes a
sweep's reports with them)."""

from .plots import plot_curves, plot_intervals, plot_profiles
from .results import method_entries, summarize_methods, write_json
from .tables import matrix_table, method_table

__all__ = ["matrix_table", "method_entries", "method_table", "plot_curves", "plot_intervals",
           "plot_profiles", "summarize_methods", "write_json"]
