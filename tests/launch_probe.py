"""Test-only module run by tests/test_common_launch.py through both launchers: prints what the run's process sees
as JSON."""

import json
import os
import sys
import warnings

if __name__ == "__main__":
    import torch

    print(json.dumps({
        "cwd": os.getcwd(),
        "argv": sys.argv[1:],
        "threads": torch.get_num_threads(),
        "marker": os.environ.get("PROBE_MARKER"),
        "ignore_warnings": any(f[0] == "ignore" and f[2] is Warning for f in warnings.filters),
    }))  # fmt: skip
    if "--fail" in sys.argv:
        raise RuntimeError("probe failed on purpose")
    if "--exit3" in sys.argv:
        sys.exit(3)
    if os.environ.get("PROBE_PIDFILE"):
        with open(os.environ["PROBE_PIDFILE"] + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(os.environ["PROBE_PIDFILE"] + ".tmp", os.environ["PROBE_PIDFILE"])
    if "--sleep" in sys.argv:
        import time

        time.sleep(60)
