"""Which engine backend a build targets: ``auto`` takes the fastest one usable on this machine."""

from __future__ import annotations

import importlib.util

from sr_runtime.errors import SRError

CHOICES = ("auto", "onnxruntime-cpu", "onnxruntime-cuda", "tensorrt")


def tensorrt_problem() -> str | None:
    """Why TensorRT cannot build here, or None when it can."""
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt Python package is not installed (pip install 'sr-export[tensorrt]' on a CUDA machine)"
    try:
        import tensorrt as trt

        trt.Builder(trt.Logger(trt.Logger.ERROR))
    except Exception as err:  # the PyPI stub and missing libraries fail in many ways; all mean "not usable"
        return f"TensorRT is installed but not usable ({type(err).__name__}: {str(err).splitlines()[0][:160]})"
    if importlib.util.find_spec("cuda") is None:  # the engines' buffers and streams come from cuda-python
        return "cuda-python is not installed (pip install 'sr-export[tensorrt]')"
    return None


def onnxruntime_providers() -> list[str]:
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    import onnxruntime as ort

    return list(ort.get_available_providers())


def cuda_ep_problem() -> str | None:
    if "CUDAExecutionProvider" not in onnxruntime_providers():
        return "ONNX Runtime has no CUDAExecutionProvider here (install onnxruntime-gpu on a CUDA machine)"
    return None


def select_backend(requested: str) -> str:
    if requested not in CHOICES:
        raise SRError(f"unknown backend {requested!r}; choose one of {', '.join(CHOICES)}")
    if requested == "tensorrt" and (problem := tensorrt_problem()):
        raise SRError(f"--backend tensorrt: {problem}")
    if requested == "onnxruntime-cuda" and (problem := cuda_ep_problem()):
        raise SRError(f"--backend onnxruntime-cuda: {problem}")
    if requested == "onnxruntime-cpu" and "CPUExecutionProvider" not in onnxruntime_providers():
        raise SRError("--backend onnxruntime-cpu: onnxruntime is not installed (pip install 'sr-export[cpu]')")
    if requested != "auto":
        return requested
    if tensorrt_problem() is None:
        return "tensorrt"
    if cuda_ep_problem() is None:
        return "onnxruntime-cuda"
    return select_backend("onnxruntime-cpu")


def default_precision(backend: str) -> str:
    """fp16 where the hardware has fast fp16 (GPUs), fp32 on the CPU."""
    return "fp32" if backend == "onnxruntime-cpu" else "fp16"
