"""True/false ids must be real booleans: ``--use_ema false`` on the command line arrives as the string "false"."""

import pytest

from scripts.common.flags import check_flags


def test_booleans_pass_strings_fail_with_a_hint():
    check_flags(use_ema=False, amp=True)
    with pytest.raises(TypeError, match="binarize_x0='false'.*--binarize_x0 False"):
        check_flags(amp=False, binarize_x0="false")


def test_a_string_flag_stops_segmentation_training_with_the_flag_named_last():
    """``--use_real_train false`` arrives as the string "false" (truthy): the first training step refuses it, and the
    bundle's error summary picks this message as the run's last line (a ValueError, like other bad settings)."""
    from helpers import parser as config_parser

    from scripts.common.flags import FlagError
    from scripts.common.guards import root_cause

    assert issubclass(FlagError, TypeError) and issubclass(FlagError, ValueError)
    parser = config_parser("seg_train", "seg_smoke.json")
    parser["use_real_train"] = "false"
    with pytest.raises(Exception) as raised:
        parser.get_parsed_content("training#0")
    cause = root_cause(raised.value)
    assert isinstance(cause, FlagError) and "use_real_train='false'" in str(cause)
