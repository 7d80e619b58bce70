"""Performance measurement of the bundle: ``python -m scripts.perf.benchmark`` (sampling against MONAI's
``DiffusionInferer.sample``, the share of a step spent outside the networks, training throughput through MONAI's
``SupervisedTrainer``, peak memory, growth with batch / size / steps, and every speed option as a ratio against the
plain path) and ``gpu_check.sh`` (the same at the paper's scale on one GPU)."""
