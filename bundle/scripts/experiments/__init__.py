"""Experiment runners built on the bundle's workflows (``seg_grid``: the paper's Table 2 protocol)."""
