from importlib.metadata import PackageNotFoundError, version

try:
    TOOL_VERSION = version("sr-export")
except PackageNotFoundError:  # running from a source tree that was never installed
    TOOL_VERSION = "0+unknown"
