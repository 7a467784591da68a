"""Prompt embeddings as diffusers' ``StableDiffusionPipeline.encode_prompt`` computes them."""

from __future__ import annotations

import torch

from .loading import SDComponents


def encode_prompt(sd: SDComponents, prompt: str) -> torch.Tensor:
    """(1, 77, D) prompt embedding in the text encoder's dtype and device (clip_skip None: last_hidden_state)."""
    tokens = sd.tokenizer(
        prompt,
        padding="max_length",
        max_length=sd.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    device = sd.text_encoder.device
    # SD-2.x configs do not ask for a mask: padding positions attend causally like any token.
    use_mask = getattr(sd.text_encoder.config, "use_attention_mask", False)
    attention_mask = tokens.attention_mask.to(device) if use_mask else None
    # no_grad, not inference_mode: callers may trace or export with this tensor as a constant.
    with torch.no_grad():
        hidden = sd.text_encoder(tokens.input_ids.to(device), attention_mask=attention_mask)[0]
    return hidden.to(sd.text_encoder.dtype)
