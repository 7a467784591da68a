from sr_runtime.version import TOOL_VERSION as __version__

__all__ = ["__version__"]
