"""Reports of a run directory: metric tables, budget comparison, plots, kept-token heatmaps."""
from pipeline.report.writer import write_report

__all__ = ["write_report"]
