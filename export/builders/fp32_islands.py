"""The layers a weakly typed TensorRT 10 fp16 build keeps in fp32: where the fp16 ONNX export keeps fp32.

TensorRT 10 with ``BuilderFlag.FP16`` builds from the fp32 graph and may run any layer in fp16. The
fp16 export (onnx_export.py, the families' stages) keeps four things in fp32, and so do we, by layer precision
constraints (``layer.precision`` + ``BuilderFlag.OBEY_PRECISION_CONSTRAINTS``):

1. normalisations: every layer TensorRT made a normalization layer, and every layer inside a norm
   module's scope (``.../norm1/...``, ``norm_out``, ``conv_norm_out``): the reshape to groups and
   the affine weight / bias around InstanceNormalization (GroupNorm) or LayerNormalization;
2. the stage arithmetic around the networks, which the torch exporter names at the top level
   (``/Mul_3``, ``/Exp``): sigma scaling and the Euler update (UNet step), the posterior sample
   (VAE encoder, noise predictor), and the cheap input / output scaling;
3. a VQ codebook lookup (``.../quantize/...``: ResShift's decoder): the distances and the argmin, where
   near-ties flip codes in fp16;
4. the scalar subgraph: layers whose float inputs all derive from the fp32 scalar inputs
   (timestep, sigma) or constants, e.g. the sinusoidal timestep embedding: sin(999 * f) in fp16
   would be noise (fp16 spacing at 999 is 0.5). This also pins the small time-embedding MLP, which
   the fp16 export runs in fp16: more precise, and negligible work.

The rule works on ``LayerView``s, so it is tested on the ONNX graph here and applied to TensorRT's
network on a GPU machine.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

NORM_SCOPE = re.compile(r"(^|/)[\w.]*norm[\w.]*/", re.IGNORECASE)
QUANTIZE_SCOPE = re.compile(r"(^|/)quantize/")
TOP_LEVEL = re.compile(r"^/[A-Za-z]+(_\d+)?$")
NORMALIZATION = "NORMALIZATION"
CONSTANT = "CONSTANT"
# A cast's output type is its to-type, explicit in the graph: nothing for a precision constraint to add.
UNCONSTRAINED = {"CAST"}


@dataclass(frozen=True)
class LayerView:
    name: str
    kind: str  # TensorRT's LayerType name: "NORMALIZATION", "CONSTANT", "CONVOLUTION", ...
    float_inputs: tuple[str, ...]  # names of its floating-point input tensors (shape / int inputs left out)
    outputs: tuple[str, ...]
    float_outputs: bool  # every output is floating point (int shape arithmetic is never constrained)


def _scalar_derived(layer: LayerView, derived: set[str], constants: set[str]) -> bool:
    if not layer.float_inputs:
        return False
    return any(t in derived for t in layer.float_inputs) and all(
        t in derived or t in constants for t in layer.float_inputs
    )


def fp32_layers(
    layers: Iterable[LayerView], scalar_inputs: Iterable[str], constants: Iterable[str] = ()
) -> list[str]:
    """Names of the layers to pin to fp32, in network order (``layers`` must be topologically ordered,
    as a parsed network is); ``constants``: tensors known constant besides CONSTANT layers' outputs
    (an ONNX graph's initializers)."""
    derived = set(scalar_inputs)
    constants = set(constants)
    chosen = []
    for layer in layers:
        if layer.kind == CONSTANT or all(t in constants for t in layer.float_inputs):
            # Weights, floats made from shapes alone (ConstantOfShape, an attention scale 1/sqrt(d)) and
            # arithmetic on those: no activation flows in, nothing to pin.
            constants.update(layer.outputs)
            continue
        scalar = _scalar_derived(layer, derived, constants)
        if scalar:
            derived.update(layer.outputs)
        if not layer.float_outputs or layer.kind in UNCONSTRAINED:
            continue
        if scalar or layer.kind == NORMALIZATION or TOP_LEVEL.match(layer.name) or any(
                scope.search(layer.name) for scope in (NORM_SCOPE, QUANTIZE_SCOPE)):
            chosen.append(layer.name)
    return chosen
