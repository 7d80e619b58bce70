"""True/false ids must be real booleans: ``--use_ema false`` on the command line arrives as the string "false"."""

import pytest

from scripts.common.flags import check_flags


def test_booleans_pass_strings_fail_with_a_hint():
    check_flags(use_ema=False, amp=True)
    with pytest.raises(TypeError, match="binarize_x0='false'.*--binarize_x0 False"):
        check_flags(amp=False, binarize_x0="false")
