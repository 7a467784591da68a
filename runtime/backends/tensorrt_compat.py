"""TensorRT versions: the one place that knows where 10 and 11 differ for this project.

- 11 builds every network strongly typed: the weak-typing builder flags (FP16, OBEY_PRECISION_CONSTRAINTS)
  and the per-layer precision API are gone, so precision comes from the ONNX graph alone.
- 10.1+ and 11 share everything the runtime uses: ``device_memory_size_v2``,
  ``create_execution_context(ExecutionContextAllocationStrategy.USER_MANAGED)``,
  ``set_device_memory(ptr, size)``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``.
  10.0 lacks the first and the third, so it is refused.

Nothing here imports tensorrt at module level: the export side tests these rules without it.
"""

from __future__ import annotations

import importlib.util

from ..errors import SRError

MIN_VERSION = (10, 1)
STRONGLY_TYPED_ONLY = 11  # the first major version without weak typing


def version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split(".")[:3])
    except ValueError:
        raise SRError(f"cannot read the TensorRT version {version!r}") from None


def major(version: str) -> int:
    return version_tuple(version)[0]


def always_strongly_typed(version: str) -> bool:
    return major(version) >= STRONGLY_TYPED_ONLY


def check_supported(version: str) -> None:
    if version_tuple(version)[:2] < MIN_VERSION:
        raise SRError(
            f"TensorRT {version} is too old: sr-export needs {MIN_VERSION[0]}.{MIN_VERSION[1]} or newer "
            "(pip install -U 'sr-export[tensorrt]')"
        )


def installed_version() -> str | None:
    """The importable tensorrt package's version, or None where there is none."""
    if importlib.util.find_spec("tensorrt") is None:
        return None
    try:
        import tensorrt
    except Exception:  # the PyPI stub and missing libraries fail in many ways: none of them is usable
        return None
    return getattr(tensorrt, "__version__", None)
