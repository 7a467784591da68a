"""The released models, their official file names and the official configs built in.

Each config holds the three sections the samplers read (``model.params``, ``autoencoder.params``,
``diffusion.params``) as written in zsyOAOA/ResShift ``configs/realsr_swinunet_realesrgan256.yaml``
(v1, v2), ``..._journal.yaml`` (v3) and wyf0912/SinSR ``configs/SinSR.yaml``; ``--config`` replaces them
with a user's YAML of the same layout.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from enum import Enum
from typing import Any

AUTOENCODER_FILE = "autoencoder_vq_f4.pth"


class OfficialCode(str, Enum):
    """Which repository's sampler a model runs: they differ in a few rules (``config.py``)."""

    RESSHIFT = "resshift"  # zsyOAOA/ResShift inference_resshift.py
    SINSR = "sinsr"  # wyf0912/SinSR inference.py --one_step


_AUTOENCODER = {
    "target": "ldm.models.autoencoder.VQModelTorch",
    "params": {
        "embed_dim": 3,
        "n_embed": 8192,
        "ddconfig": {"double_z": False, "z_channels": 3, "resolution": 256, "in_channels": 3, "out_ch": 3,
                     "ch": 128, "ch_mult": [1, 2, 4], "num_res_blocks": 2, "attn_resolutions": [],
                     "dropout": 0.0, "padding_mode": "zeros"},
    },
}
_UNET = {
    "image_size": 64, "in_channels": 3, "model_channels": 160, "out_channels": 3,
    "attention_resolutions": [64, 32, 16, 8], "dropout": 0, "channel_mult": [1, 2, 2, 4],
    "num_res_blocks": [2, 2, 2, 2], "conv_resample": True, "dims": 2, "use_fp16": False, "num_head_channels": 32,
    "use_scale_shift_norm": True, "resblock_updown": False, "swin_depth": 2, "swin_embed_dim": 192,
    "window_size": 8, "mlp_ratio": 4, "cond_lq": True,
}
_DIFFUSION = {
    "sf": 4, "schedule_name": "exponential", "schedule_kwargs": {"power": 0.3}, "etas_end": 0.99, "steps": 15,
    "min_noise_level": 0.04, "kappa": 2.0, "weighted_mse": False, "predict_type": "xstart",
    "timestep_respacing": None, "scale_factor": 1.0, "normalize_input": True, "latent_flag": True,
}


def _config(unet: dict, diffusion: dict) -> dict[str, Any]:
    return {
        "model": {"target": "models.unet.UNetModelSwin", "params": {**_UNET, **unet}},
        "autoencoder": copy.deepcopy(_AUTOENCODER),
        "diffusion": {"target": "models.script_util.create_gaussian_diffusion", "params": {**_DIFFUSION, **diffusion}},
    }


# realsr_swinunet_realesrgan256.yaml (v1, v2: 15 steps); the journal's v3 takes 4 steps from a higher floor.
CONFERENCE = _config({"lq_size": 64}, {})
JOURNAL = _config({"lq_size": 64}, {"steps": 4, "min_noise_level": 0.2})
# SinSR.yaml: its UNet class takes the 6 input channels as written and has no lq_size.
SINSR = _config({"in_channels": 6}, {})


@dataclass(frozen=True)
class ModelSpec:
    name: str  # the --model value
    checkpoint: str  # the official file name of the denoiser (in ./weights, where the official CLIs put it)
    config: dict[str, Any]
    config_name: str  # the official YAML it is built from
    code: OfficialCode

    @property
    def one_step(self) -> bool:
        """SinSR's --one_step: one UNet call at t = T-1, whose x0 prediction is the result."""
        return self.code is OfficialCode.SINSR


MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("resshift-v3", "resshift_realsrx4_s4_v3.pth", JOURNAL, "realsr_swinunet_realesrgan256_journal.yaml",
              OfficialCode.RESSHIFT),
    ModelSpec("resshift-v1", "resshift_realsrx4_s15_v1.pth", CONFERENCE, "realsr_swinunet_realesrgan256.yaml",
              OfficialCode.RESSHIFT),
    ModelSpec("resshift-v2", "resshift_realsrx4_s15_v2.pth", CONFERENCE, "realsr_swinunet_realesrgan256.yaml",
              OfficialCode.RESSHIFT),
    ModelSpec("sinsr", "SinSR_v1.pth", SINSR, "SinSR.yaml", OfficialCode.SINSR),
)}
