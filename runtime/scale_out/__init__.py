"""Scale-out: upscale a whole dataset on Ray Data with long-lived workers that each open the bundle once.

Torch-free like the rest of ``sr_runtime``: the workers run on inference machines. Ray is imported
only by ``ray_job`` and inside the workers, so importing this package never needs the ``[ray]`` extra.

- ``image_file``: one image, file to file (also the single-process loop's step);
- ``worker``: the Ray actor that upscales a stream of images;
- ``run_folder``: the output folder's lock, run record (bundle and options), finished outputs, summary file;
- ``summary``: what a run did (done, failed, skipped, throughput per worker);
- ``ray_job``: the Ray session and the Ray Data pipeline;
- ``driver``: ``upscale_on_ray``, the whole run.
"""
