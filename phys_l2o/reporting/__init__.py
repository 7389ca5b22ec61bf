"""Reporting: results.json, markdown tables and learning-curve plots."""

from .plots import plot_curves
from .results import summarize_methods, write_json
from .tables import method_table

__all__ = ["method_table", "plot_curves", "summarize_methods", "write_json"]
