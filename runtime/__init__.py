"""Thin inference runtime for sr-export engine bundles: numpy + ONNX Runtime / TensorRT, never torch."""
