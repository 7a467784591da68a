"""Engine backends, one per manifest ``backend`` value, imported only when a bundle needs one."""

from __future__ import annotations

import importlib

from ..errors import SRError
from .base import Backend, RuntimeOptions

# manifest backend -> (module in this package, class); a backend's libraries load only when it is used.
BACKEND_CLASSES = {
    "onnxruntime-cpu": ("onnxruntime", "OrtCpuBackend"),
    "onnxruntime-cuda": ("onnxruntime", "OrtCudaBackend"),
    "tensorrt": ("tensorrt", "TensorRTBackend"),
    "openvino-cpu": ("openvino", "OpenVinoCpuBackend"),
}
INSTALL_HINTS = {
    "onnxruntime-cpu": "pip install 'sr-export[cpu]'",
    "onnxruntime-cuda": "pip install 'sr-export[gpu]' on a CUDA machine",
    "tensorrt": "pip install 'sr-export[tensorrt]' on a CUDA machine",
    "openvino-cpu": "pip install 'sr-export[openvino]'",
}


def backend_for(name: str, options: RuntimeOptions | None = None) -> Backend:
    if name not in BACKEND_CLASSES:
        raise SRError(f"unknown backend {name!r}; this runtime knows {', '.join(BACKEND_CLASSES)}")
    module_name, class_name = BACKEND_CLASSES[name]
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ModuleNotFoundError as err:
        raise SRError(f"{name} bundles need the {err.name} package, which is missing here ({INSTALL_HINTS[name]})") from err
    return getattr(module, class_name)(options)
