"""The layer precisions of a built engine, from IEngineInspector's JSON, and the check that an engine
asked for in fp16 really runs fp16 layers.

Building an "fp16" engine that silently comes out all fp32 is a known failure (a dropped builder
flag, an fp32 ONNX under strong typing); only the engine's own layer list tells. The JSON is what
``get_engine_information(LayerInformationFormat.JSON)`` returns for an engine built with
``ProfilingVerbosity.DETAILED``: ``{"Layers": [{"Name", "LayerType", "Inputs": [...], "Outputs": [...],
...}], ...}``. Each tensor names its type in ``"Format/Datatype"`` (TensorRT 10: "Row major linear
FP16 format", "Half", "Float") or, since TensorRT 11, in ``"DataType"`` beside ``"Format"``.
"""

from __future__ import annotations

import json
from collections import Counter

from sr_runtime.errors import SRError
from sr_runtime.precision import Precision

# Substrings of a tensor's type text, most specific first ("bfloat" before "float").
_TYPE_WORDS = (
    ("n/a", None),  # "N/A due to dynamic shapes": the inspector had no shapes to resolve formats with
    ("fp8", "fp8"), ("e4m3", "fp8"),
    ("bf16", "bf16"), ("bfloat", "bf16"),
    ("fp16", "fp16"), ("half", "fp16"),
    ("fp32", "fp32"), ("float", "fp32"),
    ("int8", "int8"), ("int4", "int"), ("int32", "int"), ("int64", "int"), ("bool", "int"), ("uint8", "int"),
)
REDUCED = {"fp16", "bf16", "fp8", "int8"}
FLOATS = {"fp32", *REDUCED}
NAMES_KEPT = 20  # fp32 layer names kept in the summary: enough to see which islands stayed fp32
# Layers that only move data: an fp16 input reformatted for fp32 layers must not pass for fp16 work.
DATA_MOVEMENT = {"Reformat", "NoOp"}


def tensor_type(tensor: dict) -> str | None:
    """"fp32", "fp16", "bf16", "fp8", "int8", "int" or None (unknown) for one tensor of a layer."""
    for key in ("DataType", "Format/Datatype", "Format"):
        text = str(tensor.get(key, "")).lower()
        if not text:
            continue
        for word, kind in _TYPE_WORDS:
            if word in text:
                return kind
    return None


def layer_precision(layer: dict) -> str:
    """"fp16" / "fp32" when every float tensor of the layer has that type (bf16 / fp8 / int8 count as
    reduced), "mixed" for conversions between them, "other" for data movement or when no float type
    is known."""
    if layer.get("LayerType") in DATA_MOVEMENT:
        return "other"
    kinds = {tensor_type(t) for t in (*layer.get("Inputs", ()), *layer.get("Outputs", ())) if isinstance(t, dict)}
    floats = kinds & FLOATS
    if not floats:
        return "other"
    if floats <= REDUCED:
        return "fp16"
    if floats == {"fp32"}:
        return "fp32"
    return "mixed"


def precision_summary(inspector_json: str) -> dict:
    """Layer counts by precision (for the manifest's ``precision_summary``) and the first fp32 layers."""
    try:
        data = json.loads(inspector_json)
    except json.JSONDecodeError as err:
        raise SRError(f"TensorRT's engine inspector gave unreadable JSON ({err})") from err
    layers = data.get("Layers", []) if isinstance(data, dict) else []
    detailed = [layer for layer in layers if isinstance(layer, dict)]
    if not detailed:  # names only: the engine was not built with ProfilingVerbosity.DETAILED
        return {"verified": False, "layers": len(layers), "reason": "the inspector listed layer names only"}
    counts = Counter(layer_precision(layer) for layer in detailed)
    fp32 = [str(layer.get("Name", "?")) for layer in detailed if layer_precision(layer) == "fp32"]
    return {
        "verified": counts["fp16"] + counts["fp32"] + counts["mixed"] > 0,
        "layers": len(detailed),
        **{kind: counts[kind] for kind in ("fp16", "mixed", "fp32", "other")},
        "fp32_layers": fp32[:NAMES_KEPT],
    }


def check_precision(graph: str, precision: Precision, summary: dict) -> str | None:
    """Raises when an engine asked for fp16 has no layer computing in reduced precision (conversions
    and reformats do not count); returns a warning when the summary cannot tell, else None."""
    if precision is not Precision.FP16:
        return None
    if not summary.get("verified"):
        reason = summary.get("reason", "no layer of it names a floating-point type")
        return f"could not verify that the {graph} engine runs in fp16: {reason}"
    if summary["fp16"] == 0:
        raise SRError(
            f"the {graph} engine was asked for fp16 but none of its {summary['layers']} layers computes in fp16 "
            f"({summary['fp32']} fp32, {summary['mixed']} converting): TensorRT dropped the fp16 request "
            "(an fp32 ONNX under strong typing, or no BuilderFlag.FP16 on TensorRT 10); report this"
        )
    return None
