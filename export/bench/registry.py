"""The families the harness measures; a new family is one plug-in module and one line here."""

from __future__ import annotations

from .family import BenchFamily
from .invsr import InvSRBench
from .rrdbnet import RRDBNetBench


def families(sd_turbo=None, noise_predictor=None, noise_predictor_config=None, report=print) -> dict[str, BenchFamily]:
    """Random full-size weights unless checkpoints are given (then both InvSR checkpoints are needed)."""
    checkpoints = None
    if sd_turbo or noise_predictor:
        from ..locate import find_checkpoints

        sd, pth = find_checkpoints(sd_turbo, noise_predictor)
        checkpoints = (sd, pth, noise_predictor_config)
    return {"invsr": InvSRBench(checkpoints, report=report), "rrdbnet": RRDBNetBench(report=report)}
