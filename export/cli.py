"""The ``sr-export`` command line. Heavy imports (torch, diffusers, onnx) happen inside the commands
that need them, so ``upscale -e BUNDLE`` works on a runtime-only install."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from sr_runtime.errors import SRError

from . import __version__


class _Group(click.Group):
    """Turns user-fixable errors into one line on stderr and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SRError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="sr-export")
def main() -> None:
    """Export InvSR to optimized engines and upscale images with them (x4)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")


def parse_timesteps(values: tuple[str, ...]) -> list[int] | None:
    """Accepts ``--timesteps 200 --timesteps 100`` as well as ``--timesteps 200,100`` or "200 100"."""
    tokens = [tok for value in values for tok in value.replace(",", " ").split()]
    try:
        return [int(tok) for tok in tokens] or None
    except ValueError as err:
        raise SRError(f"--timesteps takes integers, got {' '.join(values)!r}") from err


OUTPUT_SUFFIXES = (".png", ".npy")


def plan_outputs(inputs: tuple[str, ...], images: list[Path], output: Path) -> list[Path]:
    """One input file -> OUTPUT is that file (by suffix); otherwise OUTPUT is a folder of <stem>.png."""
    single_file = len(inputs) == 1 and Path(inputs[0]).is_file()
    if single_file and output.suffix.lower() in OUTPUT_SUFFIXES:
        return [output]
    if single_file and output.suffix and not output.is_dir():
        raise SRError(f"output {output} must end in .png or .npy (or be a folder)")
    targets = [output / f"{image.stem}.png" for image in images]
    seen: dict[Path, Path] = {}
    for image, target in zip(images, targets, strict=True):
        if target in seen:
            raise SRError(f"{seen[target].name} and {image.name} would both be written to {target}")
        seen[target] = image
    return targets


def upscale_files(upscale_one, images: list[Path], targets: list[Path]) -> None:
    """Reads, upscales and writes each image; ``upscale_one(pixels, on_tiles_done)`` does the work."""
    from tqdm import tqdm

    from sr_runtime.images import read_image, write_image

    for image, target in tqdm(list(zip(images, targets, strict=True)), desc="images", unit="img",
                              disable=len(images) < 2, file=sys.stderr):
        loaded = read_image(image)
        h, w = loaded.pixels.shape[:2]
        with tqdm(desc=f"{image.name} {w}x{h}", unit="tile", leave=False, file=sys.stderr) as bar:

            def on_tiles_done(done: int, total: int, bar=bar) -> None:
                bar.total = total
                bar.update(done - bar.n)

            result = upscale_one(loaded.pixels, on_tiles_done)
        write_image(target, result, bit_depth=loaded.bit_depth)
        click.echo(f"wrote {target} ({result.shape[1]}x{result.shape[0]})", err=True)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Output file (.png/.npy) for one input, else a folder.")
@click.option("-e", "--engine", "bundle", type=click.Path(path_type=Path),
              help="Engine bundle folder from `sr-export build` (the thin runtime).")
@click.option("--backend", type=click.Choice(["torch"]), default=None,
              help="torch: run the PyTorch reference pipeline instead of a bundle.")
@click.option("--sd-turbo", type=click.Path(path_type=Path), help="SD-Turbo diffusers folder or hub cache.")
@click.option("--noise-predictor", type=click.Path(path_type=Path), help="noise_predictor_sd_turbo_v5.pth")
@click.option("--noise-predictor-config", type=click.Path(path_type=Path),
              help="Official sampler YAML (model_start.params) or a flat YAML/JSON of the same keys.")
@click.option("--steps", type=int, default=1, show_default=True, help="Number of sampling steps.")
@click.option("--timesteps", multiple=True, help="Descending timesteps, e.g. '200,100' (default: the official set).")
@click.option("--color-fix", type=click.Choice(["wavelet", "ycbcr"]), default=None)
@click.option("--tile", type=int, default=128, show_default=True, help="LR tile size (chopping size).")
@click.option("--batch", type=int, default=8, show_default=True, help="Tiles per network call.")
@click.option("--seed", type=int, default=None, help="Sample the posteriors with this seed (default: posterior means).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--dtype", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True)
def upscale(inputs, output, bundle, backend, sd_turbo, noise_predictor, noise_predictor_config, steps, timesteps,
            color_fix, tile, batch, seed, device, dtype) -> None:
    """Upscale images x4 (INPUT: image files and/or folders)."""
    from sr_runtime.images import collect_inputs
    from sr_runtime.upscale import UpscaleSettings

    images = collect_inputs(inputs)
    targets = plan_outputs(inputs, images, output)
    if bundle is not None and backend is not None:
        raise SRError("give either -e BUNDLE (engines) or --backend torch (reference), not both")
    if bundle is not None:
        upscaler = _open_bundle(bundle)
        upscale_files(
            lambda pixels, progress: upscaler.upscale(pixels, color_fix=color_fix, seed=seed, on_tiles_done=progress),
            images,
            targets,
        )
        return
    if backend is None:
        raise SRError("nothing to run: pass -e BUNDLE (see `sr-export build`) or --backend torch")
    settings = UpscaleSettings(tile=tile, batch=batch, color_fix=color_fix, seed=seed)
    reference = _torch_reference(sd_turbo, noise_predictor, noise_predictor_config, steps, timesteps, device, dtype)
    upscale_files(lambda pixels, progress: reference.upscale(pixels, settings, progress), images, targets)


DEMO_WARNING = "WARNING: {} is a DEMO bundle (random weights): its outputs are NOT meaningful"


def _open_bundle(bundle: Path):
    from sr_runtime.pipeline import Upscaler

    upscaler = Upscaler.from_bundle(bundle)
    m = upscaler.manifest
    steps = f", {m.pipeline.steps} step(s)" if m.pipeline.timesteps else ""
    click.echo(f"bundle {bundle}: {m.pipeline.family} {m.backend} {m.precision}{steps}, tile {m.pipeline.tile}", err=True)
    return upscaler  # a demo bundle is announced by the runtime's own warning


def _torch_reference(sd_turbo, noise_predictor, noise_predictor_config, steps, timesteps, device, dtype):
    from .locate import find_checkpoints
    from .reference import DTYPES, InvSRReference, load_components
    from .schedule import build_schedule, resolve_timesteps

    cli_timesteps = resolve_timesteps(steps, parse_timesteps(timesteps))
    found = find_checkpoints(sd_turbo, noise_predictor)
    if found is None:
        raise SRError("no checkpoints found: pass --sd-turbo DIR and --noise-predictor PTH")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SRError("--device cuda asked for, but this torch has no usable CUDA device")
    click.echo(f"loading SD-Turbo from {found[0]} and the noise predictor from {found[1]}", err=True)
    components = load_components(found[0], found[1], noise_predictor_config)
    schedule = build_schedule(components.scheduler_config, cli_timesteps)
    click.echo(f"timesteps {list(schedule.cli_timesteps)}, sigmas {[round(s, 6) for s in schedule.sigmas]}", err=True)
    return InvSRReference(components, schedule, device=device, dtype=DTYPES[dtype])


# --model values: InvSR, and the RRDBNet family's checkpoint layouts (sr_export.rrdbnet_source.MODELS).
MODELS = ("invsr", "realesrgan", "bsrgan")
INVSR_BUILD_OPTIONS = ("steps", "timesteps", "sd_turbo", "noise_predictor", "noise_predictor_config")
TENSORRT_BUILD_OPTIONS = ("strongly_typed", "opt_level", "workspace")


def _given(names: tuple[str, ...]) -> list[str]:
    """The options among ``names`` that the command line set (not left at their defaults)."""
    ctx = click.get_current_context()
    return [n for n in names if ctx.get_parameter_source(n) not in (None, click.core.ParameterSource.DEFAULT)]


def _option_names(names) -> str:
    return ", ".join("--" + n.replace("_", "-") for n in names)


@main.command()
@click.option("--model", type=click.Choice(MODELS), default="invsr", show_default=True,
              help="invsr (diffusion), realesrgan (RealESRGAN_x4plus.pth) or bsrgan (BSRGAN.pth).")
@click.option("--checkpoint", type=click.Path(path_type=Path),
              help="realesrgan / bsrgan: the .pth (default ./weights/<official name>, else a demo model).")
@click.option("--overlap", type=int, default=None,
              help="realesrgan / bsrgan: LR px of context around each tile, cropped from its output (default 16).")
@click.option("--steps", type=int, default=1, show_default=True, help="Number of sampling steps (1-5, or any with --timesteps).")
@click.option("--timesteps", multiple=True, help="Descending timesteps, e.g. '200,100' (default: the official set).")
@click.option("--sd-turbo", type=click.Path(path_type=Path), help="SD-Turbo diffusers folder or hub cache.")
@click.option("--noise-predictor", type=click.Path(path_type=Path), help="noise_predictor_sd_turbo_v5.pth")
@click.option("--noise-predictor-config", type=click.Path(path_type=Path),
              help="Official sampler YAML (model_start.params) or a flat YAML/JSON of the same keys.")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime-cpu", "onnxruntime-cuda", "tensorrt"]),
              default="auto", show_default=True, help="auto: TensorRT, else ONNX Runtime CUDA, else ONNX Runtime CPU.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default=None,
              help="Default: fp16 on GPU backends, fp32 on the CPU.")
@click.option("--tile", type=int, default=128, show_default=True, help="LR tile size the engines are built for.")
@click.option("--batch", type=int, default=1, show_default=True, help="Tiles per engine call (max batch of the engines).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Bundle folder (default engines/<model>[-s<N>]-<backend>-<precision>).")
@click.option("--strongly-typed", is_flag=True,
              help="TensorRT 10: build the fp16 ONNX strongly typed instead of fp32 ONNX + FP16 flag (11 always does).")
@click.option("--opt-level", type=click.IntRange(0, 5), default=3, show_default=True,
              help="TensorRT builder optimization level: 0 builds fastest, 5 searches tactics longest.")
@click.option("--workspace", type=click.FloatRange(min=0, min_open=True), default=None,
              help="TensorRT: GiB of scratch memory tactics may use while building (default: TensorRT's).")
def build(model, checkpoint, overlap, steps, timesteps, sd_turbo, noise_predictor, noise_predictor_config, backend,
          precision, tile, batch, output, strongly_typed, opt_level, workspace):
    """Export a model to ONNX and build an engine bundle.

    Without checkpoint options it looks in the Hugging Face cache (InvSR) and ./weights; if nothing is
    found it builds the built-in demo model (random weights, outputs not meaningful).
    """
    from .build.bundle_builder import BuildOptions, build_bundle
    from .build.select import select_backend

    report = _echo
    if backend.startswith("onnxruntime") and (misplaced := _given(TENSORRT_BUILD_OPTIONS)):
        raise SRError(f"{_option_names(misplaced)}: TensorRT options; --backend {backend} builds no TensorRT engines")
    if model == "invsr":
        from sr_runtime.upscale import check_tile

        from .schedule import resolve_timesteps
        from .sources import resolve_source

        if misplaced := _given(("checkpoint", "overlap")):
            raise SRError(f"{_option_names(misplaced)}: RRDBNet options; InvSR takes --sd-turbo and --noise-predictor")
        cli_timesteps = resolve_timesteps(steps, parse_timesteps(timesteps))
        check_tile(tile)  # before any heavy work
        select_backend(backend)  # fails at once when the asked-for backend is unusable here
        source = resolve_source(sd_turbo, noise_predictor, noise_predictor_config, report=report)
    else:
        from sr_runtime.crop_tiling import check_overlap

        from .rrdbnet_source import DEFAULT_OVERLAP, resolve_rrdbnet_source

        if misplaced := _given(INVSR_BUILD_OPTIONS):
            raise SRError(f"{_option_names(misplaced)}: InvSR options; {model} takes --checkpoint")
        overlap = DEFAULT_OVERLAP if overlap is None else overlap
        check_overlap(tile, overlap)
        select_backend(backend)
        source = resolve_rrdbnet_source(model, checkpoint, overlap, report=report)
        cli_timesteps = ()  # a feed-forward network: no schedule
    opts = BuildOptions(steps=len(cli_timesteps), cli_timesteps=tuple(cli_timesteps), backend=backend,
                        precision=precision, tile=tile, batch=batch, output=output,
                        strongly_typed=strongly_typed, opt_level=opt_level, workspace_gib=workspace)
    path = build_bundle(source, opts, report=report)
    if source.demo:
        click.echo(DEMO_WARNING.format(path), err=True)
    click.echo(str(path))


def _echo(message: str) -> None:
    click.echo(message, err=True)


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--verify", is_flag=True, help="Also recompute the sha256 of every engine file.")
def inspect(bundle, verify):
    """Show what a bundle holds and whether this machine can run it."""
    from sr_runtime.manifest import read_manifest
    from sr_runtime.version import TOOL_VERSION

    m = read_manifest(bundle, TOOL_VERSION)
    p = m.pipeline
    lines = [
        f"bundle      {bundle}{'   (DEMO: random weights, outputs not meaningful)' if m.demo else ''}",
        f"built by    sr-export {m.tool_version} on {m.created}",
        f"backend     {m.backend} {m.backend_version}, precision {m.precision}",
        f"model       {p.family}, x{p.scale}, tile {p.tile}, batch {p.batch}"
        + (f", overlap {p.overlap}" if p.overlap else ""),
    ]
    if p.timesteps:
        lines += [f"timesteps   {p.cli_timesteps}  (t = {p.timesteps})", f"sigmas      {[round(s, 6) for s in p.sigmas]}"]
    if m.precision_fallback:
        lines.append(f"precision   {m.precision}: {m.precision_fallback}")
    for name, g in m.graphs.items():
        ins = ", ".join(f"{t.name}{tuple(t.shape)}:{t.dtype}" for t in g.inputs)
        lines.append(f"graph       {name:16s} {g.file} ({g.size / 2**20:.1f} MiB)  in: {ins}")
    for name, ck in m.checkpoints.items():
        lines.append(f"checkpoint  {name}: {ck.get('path')}")
    if m.target:
        lines.append(f"target      {m.target}")
    click.echo("\n".join(lines))
    if verify:
        from sr_runtime.bundle_check import verify_bundle

        verify_bundle(bundle)
        click.echo("verify      all engine files match their sha256")


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--reference-bundle", type=click.Path(path_type=Path), default=None,
              help="An onnxruntime-cpu fp32 bundle of the same model (default: built once from the cached ONNX).")
@click.option("--noise-predictor-config", type=click.Path(path_type=Path),
              help="InvSR: the config the bundle was built with, to build the reference (default: the YAML beside it).")
@click.option("--tiles", type=int, default=None, help="Tiles compared (default: the bundle's batch).")
@click.option("--cuda-graph", is_flag=True, help="Run the bundle's chain as a CUDA graph (GPU backends).")
def compare(bundle, reference_bundle, noise_predictor_config, tiles, cuda_graph):
    """PSNR of a bundle's engines against ONNX Runtime fp32 on the same inputs, per engine call and end to end."""
    from sr_runtime.backends.base import RuntimeOptions

    from . import compare as comparison

    reference = reference_bundle or comparison.reference_bundle(bundle, noise_predictor_config, report=_echo)
    result = comparison.compare_bundles(bundle, reference, tiles, options=RuntimeOptions(cuda_graph=cuda_graph))
    click.echo(f"{bundle} against {reference}")
    click.echo("\n".join(result.lines()))


@main.group()
def bench() -> None:
    """Benchmarks: runtime and parameter reports."""


@bench.command()
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--backends", multiple=True,
              help="Only these: eager, compile, onnxruntime-cpu, onnxruntime-cuda, tensorrt (default: all usable).")
@click.option("--methods", multiple=True, help="Only these rows, e.g. InvSR-1 (default: all).")
@click.option("--runs", type=int, default=3, show_default=True, help="Timed runs per measurement.")
@click.option("--warmup", type=int, default=1, show_default=True)
@click.option("--large/--no-large", default=None, help="Also time a 512 -> 2048 image (default: on GPU only).")
@click.option("--batch", type=int, default=4, show_default=True, help="Tiles per call for the large image.")
@click.option("--sd-turbo", type=click.Path(path_type=Path), help="Real checkpoints instead of random weights.")
@click.option("--noise-predictor", type=click.Path(path_type=Path))
@click.option("--noise-predictor-config", type=click.Path(path_type=Path))
@click.option("--report", "report_dir", type=click.Path(path_type=Path), default=Path("bench-report"), show_default=True)
def table7(device, backends, methods, runs, warmup, large, batch, sd_turbo, noise_predictor, noise_predictor_config,
           report_dir):
    """The InvSR paper's Table 7 (x4, 128 -> 512): params and runtime, every backend side by side."""
    from .bench.registry import families
    from .bench.report import write_report
    from .bench.table7 import METHODS, BenchSettings, run_table7

    known = {m.name for m in METHODS}
    if unknown := [m for m in methods if m not in known]:
        raise SRError(f"unknown method(s) {', '.join(unknown)}; Table 7 has {', '.join(sorted(known))}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SRError("--device cuda asked for, but this torch has no usable CUDA device")
    if runs < 1 or warmup < 0:
        raise SRError("--runs must be at least 1 and --warmup at least 0")
    settings = BenchSettings(device=device, runs=runs, warmup=warmup, backends=tuple(backends) or None,
                             methods=tuple(methods) or None, large=device == "cuda" if large is None else large,
                             batch=batch)
    found = families(sd_turbo, noise_predictor, noise_predictor_config, report=_echo)
    data = run_table7(found, settings, report=_echo)
    for path in write_report(data, report_dir):
        click.echo(str(path))
