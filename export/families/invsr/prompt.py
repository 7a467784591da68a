"""The one prompt InvSR ever uses (``sampler_invsr.py``: ``_positive``; cfg_scale 1.0, no negative prompt)."""

POSITIVE_PROMPT = (
    "Cinematic, high-contrast, photo-realistic, 8k, ultra HD, "
    "meticulous detailing, hyper sharpness, perfect without deformations"
)
