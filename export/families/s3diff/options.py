"""S3Diff's command-line options."""

from __future__ import annotations

from ... import cli_options as shared

DE_NET = shared.path_option("--de-net", help="de_net.pth, the degradation estimator (default: ./assets/mm-realsr/ "
                                             "or ./weights/de_net.pth).")
CHECKPOINTS = (shared.CHECKPOINT, shared.SD_TURBO, DE_NET)
