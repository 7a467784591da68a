"""Attention exported as one fused ONNX Runtime node instead of MatMul -> Softmax -> MatMul.

The plain export materialises every (tokens x tokens) score matrix: for the noise predictor's
16,384-token attention that is 1 GiB per head in fp32, and ONNX Runtime's CPU run of full-size InvSR
peaks near 20 GB. ONNX Runtime's ``com.microsoft.MultiHeadAttention`` (CPU and CUDA kernels) computes
the same attention without keeping the scores (measured on one 16,384-token, 4-head attention:
8.7 GB -> 0.2 GB peak, 3.1 s -> 0.7 s on 2 CPU cores, max-abs 3e-8).

While ``fused_attention_export()`` is active, ``F.scaled_dot_product_attention`` (what diffusers'
attention processors call) still computes in torch, but traces to that node. TensorRT's parser has no
``com.microsoft`` ops and fuses attention itself, so TensorRT builds export the plain graph.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

DOMAIN = "com.microsoft"
_sdpa = F.scaled_dot_product_attention


class _MultiHeadAttention(torch.autograd.Function):
    """q, k, v as (batch, heads, tokens, head_dim), as scaled_dot_product_attention takes them."""

    @staticmethod
    def forward(ctx, query, key, value, heads: int):
        return _sdpa(query, key, value)

    @staticmethod
    def symbolic(g, query, key, value, heads: int):
        def to_bsd(x):  # (B, H, S, d) -> (B, S, H*d): the layout MultiHeadAttention takes
            x = g.op("Transpose", x, perm_i=[0, 2, 1, 3])
            return g.op("Reshape", x, g.op("Constant", value_t=torch.tensor([0, 0, -1], dtype=torch.int64)))

        out = g.op(f"{DOMAIN}::MultiHeadAttention", to_bsd(query), to_bsd(key), to_bsd(value), num_heads_i=heads)
        out = g.op("Reshape", out, g.op("Constant", value_t=torch.tensor([0, 0, heads, -1], dtype=torch.int64)))
        return g.op("Transpose", out, perm_i=[0, 2, 1, 3])


def _fused_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
    if attn_mask is not None or is_causal or dropout_p or kwargs or (scale is not None and scale != query.shape[-1] ** -0.5):
        # Not a plain attention (none of InvSR's networks does this): keep the exact op.
        return _sdpa(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale,
                     **kwargs)
    return _MultiHeadAttention.apply(query, key, value, int(query.shape[1]))


@contextlib.contextmanager
def fused_attention_export():
    F.scaled_dot_product_attention = _fused_sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = _sdpa
