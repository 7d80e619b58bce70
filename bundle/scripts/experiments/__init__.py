"""Resumable experiment runners over the bundle's workflows: ``stages`` (one ``monai.bundle run`` process per stage,
completion markers), ``seg_grid`` (the paper's Table 2 protocol) and ``compare_generators`` (Table 1)."""
