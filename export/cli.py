"""The ``sr-export`` command line. Each model family and engine backend brings its own options
(``cli_families``); heavy imports (torch, diffusers, onnx) happen inside the commands and families
that need them, so ``upscale -e BUNDLE`` works on a runtime-only install."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import click

from sr_runtime.backends.base import RuntimeOptions
from sr_runtime.errors import SRError, Terminated, os_error_line, raise_on_sigterm
from sr_runtime.precision import Precision

from . import __version__
from .builders.backends import AUTO, BACKENDS, CHOICES
from .cli_cache import cache, footprint_line
from .cli_families import GroupedCommand, backend_groups, family_groups, flags, options_for
from .cli_options import BATCH, MAX_BATCH, TILE_PX, FiniteFloatRange
from .cli_upscale import SCALE_OUT, path_options
from .families import FAMILIES, all_models, family_for_model, family_named
from .families.base import ImageRunner

DEMO_WARNING = "WARNING: {} is a DEMO bundle (random weights): its outputs are NOT meaningful"
PRECISIONS = [p.value for p in Precision]


class _Group(click.Group):
    """Turns user-fixable errors into one line on stderr and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SRError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(1)
        except OSError as err:  # the file system's refusals (permissions, a full disk) name their file
            click.echo(f"error: {os_error_line(err)}", err=True)
            sys.exit(1)
        except Terminated:
            click.echo("terminated", err=True)
            sys.exit(128 + signal.SIGTERM)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


class _LogLines(logging.Formatter):
    """What the runtime reports (INFO) as plain lines; warnings and errors say what they are."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname}: {text}"


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="sr-export")
def main() -> None:
    """Export diffusion and GAN x4 super-resolution models to optimized engines and upscale images with them."""
    raise_on_sigterm()  # a killed run cleans up as after Ctrl-C
    handler = logging.StreamHandler()
    handler.setFormatter(_LogLines())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("sr_runtime").setLevel(logging.INFO)


def _echo(message: str) -> None:
    click.echo(message, err=True)


RUN_GROUPS = family_groups("run_options")
REFERENCE_GROUPS = family_groups("reference_options", "{title} reference options (--backend torch --model {models})",
                                 "{title} reference (--backend torch)")


@main.command(cls=GroupedCommand, option_groups=[*RUN_GROUPS, *REFERENCE_GROUPS, SCALE_OUT])
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Output file (.png/.npy) for one input, else a folder; never an input or an input folder.")
@click.option("-e", "--engine", "bundle", type=click.Path(path_type=Path),
              help="Engine bundle folder from `sr-export build` (the thin runtime).")
@click.option("--backend", type=click.Choice(["torch"]), default=None,
              help="torch: run the PyTorch reference instead of a bundle.")
@click.option("--model", type=click.Choice(all_models()), default=None,
              help="With --backend torch: which model (default invsr); a bundle knows its own.")
@click.option("--max-memory", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="GiB of memory one image may take; larger images are refused before they start "
                   "(default: 80% of the memory available when the run starts).")
@click.option("--no-verify", is_flag=True,
              help="With -e: skip checking every bundle file's sha256 when the bundle opens (a damaged bundle then runs).")
@click.option("--cuda-graph", is_flag=True,
              help="With -e on a GPU bundle: replay each tile batch's engine calls as CUDA graphs (fewer kernel "
                   "launches; every batch then runs at the bundle's batch size).")
@click.option("--overwrite", is_flag=True,
              help="Replace output files that exist (without it each is refused in one line and the others go on).")
@click.option("--workers", type=click.IntRange(min=1), default=None, metavar="N",
              help="Upscale on Ray with N workers, each opening the bundle once (needs the [ray] extra); resumable: a "
                   "run started again skips the finished outputs. See the scale-out options.")
def upscale(inputs, output, bundle, backend, model, max_memory, no_verify, cuda_graph, overwrite, workers,
            **options) -> None:
    """Upscale images x4 (INPUT: image files, folders and list files (.txt/.list: a path per line)). Every
    image is tried; failures are listed and make the exit status 1."""
    from sr_runtime.images import collect_inputs
    from sr_runtime.resources import memory_limit

    from .cli_upscale import (
        check_written,
        expand_list_files,
        finish,
        plan_outputs,
        refuse_run_folders,
        scale_out,
        upscale_files,
    )

    ctx = click.get_current_context()
    inputs, lists = expand_list_files(inputs)
    found = collect_inputs(inputs, lists)
    targets = plan_outputs(inputs, found, output)
    if bundle is not None and backend is not None:
        raise SRError("give either -e BUNDLE (engines) or --backend torch (reference), not both")
    for flag, given in (("--no-verify", no_verify), ("--cuda-graph", cuda_graph)):
        if bundle is None and given:
            raise SRError(f"{flag} goes with -e BUNDLE")
    runtime = RuntimeOptions(cuda_graph=cuda_graph)
    if workers is not None:
        if bundle is None:
            raise SRError("--workers runs a bundle: pass -e BUNDLE (--backend torch runs in this process only)")
        if overwrite:
            raise SRError("--overwrite is for single-process runs; a --workers run keeps what it finished, and --redo "
                          "upscales every image again")
        run = _bundle_options(ctx, bundle, model)
        return scale_out(ctx, workers, found, targets, output, bundle, run, max_memory, runtime, verify=not no_verify)
    options_for(ctx, [], [SCALE_OUT], "they go with --workers N")
    refuse_run_folders(targets)
    if bundle is not None:
        runner = _bundle_runner(ctx, bundle, model, runtime, verify=not no_verify)
    else:
        runner = _reference_runner(ctx, backend, model)
    check_written(found, targets, runner.paths, bundle)
    finish(upscale_files(runner, found, targets, memory_limit(max_memory), overwrite), len(found.images))


def _bundle_options(ctx: click.Context, bundle: Path, model: str | None) -> dict:
    """The bundle family's run options; another family's, or what this bundle cannot run, is refused before
    the first image."""
    from sr_runtime.bundle_manifest import read_manifest
    from sr_runtime.pipeline import open_family
    from sr_runtime.version import TOOL_VERSION

    if model is not None:
        raise SRError("--model goes with --backend torch; a bundle knows its own model")
    manifest = read_manifest(bundle, TOOL_VERSION)
    family = family_named(manifest.pipeline.family)
    run = options_for(ctx, [g for g in RUN_GROUPS if g.owner == family.name], [*RUN_GROUPS, *REFERENCE_GROUPS],
                      f"this {family.title} bundle takes {flags(family.run_options)}")
    open_family(bundle, manifest).options(**run)
    return run


def _bundle_runner(ctx: click.Context, bundle: Path, model: str | None, runtime: RuntimeOptions,
                   verify: bool) -> ImageRunner:
    from sr_runtime.pipeline import Upscaler

    run = _bundle_options(ctx, bundle, model)
    upscaler = Upscaler.from_bundle(bundle, options=runtime, verify=verify)
    m = upscaler.manifest
    # A demo bundle is announced by the runtime's own warning.
    _echo(f"bundle {bundle}: {m.pipeline.family} {m.backend} {m.precision.value}, tile {m.pipeline.tile}"
          + ("" if verify else ", files not verified") + (", CUDA graphs" if runtime.cuda_graph else ""))
    return ImageRunner(lambda pixels, progress, per_image: upscaler.upscale(pixels, progress, **{**run, **per_image}),
                       lambda height, width: upscaler.cost(height, width, **run),
                       path_options(run))


def _reference_runner(ctx: click.Context, backend: str | None, model: str | None) -> ImageRunner:
    if backend is None:
        raise SRError("nothing to run: pass -e BUNDLE (see `sr-export build`) or --backend torch")
    model = model or "invsr"
    family = family_for_model(model)
    groups = [*RUN_GROUPS, *REFERENCE_GROUPS]
    own = [g for g in groups if g.owner == family.name]
    chosen = options_for(ctx, own, groups, f"--model {model} takes {flags(o for g in own for o in g.options)}")
    return family.reference(model, chosen, report=_echo)


BUILD_GROUPS = family_groups("build_options")
BACKEND_GROUPS = backend_groups()


@main.command(cls=GroupedCommand, option_groups=[*BUILD_GROUPS, *BACKEND_GROUPS])
@click.option("--model", type=click.Choice(all_models()), default="invsr", show_default=True,
              help="Which model: " + "; ".join(f"{', '.join(f.models)} ({f.title})" for f in FAMILIES.values()) + ".")
@click.option("--backend", type=click.Choice(CHOICES), default=AUTO, show_default=True,
              help="auto: TensorRT, else ONNX Runtime CUDA, else ONNX Runtime CPU.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help="Default: fp16 on GPU backends, fp32 on the CPU. bf16: --backend openvino-cpu only "
                   "(bfloat16 arithmetic where the CPU has bf16 instructions).")
@click.option("--tile", type=TILE_PX, default=None,
              help="LR tile size the engines are built for (default 128; RRDBNet on the CPU: 512).")
@click.option("--batch", type=BATCH, default=1, show_default=True, help="Tiles per engine call (max batch of the engines).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Bundle folder (default engines/<model>[-s<N>]-<backend>-<precision>); only a bundle folder "
                   "(or an empty one) is ever replaced.")
def build(model, backend, precision, tile, batch, output, **options):
    """Export a model to ONNX and build an engine bundle.

    Without checkpoint options it looks in the default places (the Hugging Face cache, ./weights); if
    nothing is found it builds the built-in demo model (random weights, outputs not meaningful).
    """
    from .atomic_folders import check_bundle_target
    from .builders.backends import select_backend
    from .builders.bundle_builder import BuildOptions, build_bundle

    ctx = click.get_current_context()
    family = family_for_model(model)
    chosen = options_for(ctx, [g for g in BUILD_GROUPS if g.owner == family.name], BUILD_GROUPS,
                         f"--model {model} takes {flags(family.build_options)}")
    builds = backend if backend != AUTO else select_backend(AUTO).name
    resolved = "" if backend != AUTO else f" (it builds {builds} here)"
    engine = options_for(ctx, [g for g in BACKEND_GROUPS if g.owner == builds], BACKEND_GROUPS,
                         f"--backend {backend}{resolved} does not take them")
    engine_backend = select_backend(backend)  # fails at once when the asked-for backend is unusable here
    precision = Precision(precision) if precision else None
    engine_backend.build_precision(precision)
    tile = family.default_tile(engine_backend) if tile is None else tile
    family.check_build(model, chosen, tile)  # before any heavy work
    if output is not None:
        check_bundle_target(output)
    source = family.source(model, chosen, report=_echo)
    opts = BuildOptions(backend=backend, precision=precision, tile=tile,
                        batch=batch, output=output, **engine)
    path = build_bundle(source, opts, report=_echo)
    if source.demo:
        _echo(DEMO_WARNING.format(path))
    click.echo(str(path))


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--verify", is_flag=True, help="Also recompute the sha256 of every engine file.")
def inspect(bundle, verify):
    """Show what a bundle holds and whether this machine can run it."""
    from sr_runtime.bundle_manifest import read_manifest
    from sr_runtime.pipeline import open_family
    from sr_runtime.version import TOOL_VERSION

    m = read_manifest(bundle, TOOL_VERSION)
    p = m.pipeline
    lines = [
        f"bundle      {bundle}{'   (DEMO: random weights, outputs not meaningful)' if m.demo else ''}",
        f"built by    sr-export {m.tool_version} on {m.created}",
        f"backend     {m.backend} {m.backend_version}, precision {m.precision.value}",
        f"model       {p.family}, x{p.scale}, tile {p.tile}, batch {p.batch}",
        *open_family(bundle, m).describe(),
    ]
    if m.precision_fallback:
        lines.append(f"precision   {m.precision.value}: {m.precision_fallback}")
    for name, g in m.graphs.items():
        ins = ", ".join(f"{t.name}{tuple(t.shape)}:{t.dtype}" for t in g.inputs)
        lines.append(f"graph       {name:16s} {g.file} ({g.size / 2**20:.1f} MiB)  in: {ins}")
        if g.rewrites:
            lines.append(f"            {'':16s} rewritten: {g.rewrites}")
    for name, ck in m.checkpoints.items():
        lines.append(f"checkpoint  {name}: {ck.path}")
    if m.target:
        lines.append(f"target      {m.target.gpu_name} (compute capability {m.target.compute_capability})")
    if m.cpu_target:
        lines.append(f"target      {m.cpu_target}: graphs optimised for this CPU")
    click.echo("\n".join(lines))
    if verify:
        from sr_runtime.bundle_check import verify_bundle

        verify_bundle(bundle)
        click.echo("verify      all engine files match their sha256")


COMPARE_GROUPS = family_groups("compare_options")


@main.command(cls=GroupedCommand, option_groups=COMPARE_GROUPS)
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--reference-bundle", type=click.Path(path_type=Path), default=None,
              help="An onnxruntime-cpu fp32 bundle of the same model (default: built once from the cached ONNX).")
@click.option("--tiles", type=click.IntRange(1, MAX_BATCH), default=None, help="Tiles compared (default: the bundle's batch).")
@click.option("--cuda-graph", is_flag=True, help="Run the bundle's chain as a CUDA graph (GPU backends).")
def compare(bundle, reference_bundle, tiles, cuda_graph, **options):
    """PSNR of a bundle's engines against ONNX Runtime fp32 on the same inputs, per engine call and end to end."""
    from sr_runtime.bundle_manifest import read_manifest
    from sr_runtime.version import TOOL_VERSION

    from . import compare as comparison

    ctx = click.get_current_context()
    family = family_named(read_manifest(bundle, TOOL_VERSION).pipeline.family)
    chosen = options_for(ctx, [g for g in COMPARE_GROUPS if g.owner == family.name], COMPARE_GROUPS,
                         f"this {family.title} bundle takes {flags(family.compare_options)}")
    reference = reference_bundle or comparison.reference_bundle(bundle, chosen, report=_echo)
    result = comparison.compare_bundles(bundle, reference, tiles, options=RuntimeOptions(cuda_graph=cuda_graph))
    click.echo(f"{bundle} against {reference}")
    click.echo("\n".join(result.lines()))


main.add_command(cache)


@main.group()
def bench() -> None:
    """Benchmarks: runtime and parameter reports."""


for _family in FAMILIES.values():
    for _command in _family.bench_commands:
        bench.add_command(_command)


def _names(values: tuple[str, ...]) -> tuple[str, ...] | None:
    """Repeated options and comma lists alike: ``--methods A,B --methods C``."""
    names = tuple(name.strip() for value in values for name in value.split(",") if name.strip())
    return names or None


QUICK_METHODS = ("InvSR-1", "RealESRGAN")
BENCH_GROUPS = family_groups("bench_options", "{title} checkpoints (default: full-size random weights)")


@bench.command(cls=GroupedCommand, option_groups=BENCH_GROUPS)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--backends", multiple=True,
              help="Only these, e.g. eager,onnxruntime-cpu: eager, compile, " + ", ".join(BACKENDS)
              + " (default: all usable; openvino-cpu at fp32, and at bf16 where the CPU has it).")
@click.option("--methods", multiple=True, help="Only these rows, e.g. InvSR-1,RealESRGAN (default: all).")
@click.option("--runs", type=click.IntRange(1, 1000), default=3, show_default=True, help="Timed runs per measurement.")
@click.option("--warmup", type=click.IntRange(0, 100), default=1, show_default=True)
@click.option("--large/--no-large", default=None, help="Also time a 512 -> 2048 image (default: on GPU only).")
@click.option("--batch", type=BATCH, default=4, show_default=True, help="Tiles per call for the large image.")
@click.option("--quick", is_flag=True,
              help=f"{', '.join(QUICK_METHODS)} only (unless --methods), eager, torch.compile and the bundles "
                   "(OpenVINO only if --backends names it), one timed run, end to end only (no stage breakdown, no "
                   "variants).")
@click.option("--params-only", is_flag=True,
              help="Only the #params column (the paper's figure beside ours), counted from the released architectures "
                   "in seconds: nothing is written, loaded, built or timed.")
@click.option("--report", "report_dir", type=click.Path(path_type=Path), default=Path("bench-report"), show_default=True)
def table7(device, backends, methods, runs, warmup, large, batch, quick, params_only, report_dir, **options):
    """The InvSR paper's Table 7 (x4, 128 -> 512): params and runtime, every backend side by side, each
    row and backend in a process of its own."""
    from .bench.report import write_report
    from .bench.table7 import BenchSettings, run_table7, table_rows
    from .devices import check_torch_device

    family_options = {f.name: {o.name: options[o.name] for o in f.bench_options} for f in FAMILIES.values()}
    families = {f.name: f.bench(family_options[f.name], report=_echo) for f in FAMILIES.values()}
    rows = table_rows(families)
    methods = _names(methods) or (QUICK_METHODS if quick else None)
    if unknown := [m for m in methods or () if m not in {row.name for row in rows}]:
        raise SRError(f"unknown method(s) {', '.join(unknown)}; Table 7 has {', '.join(sorted(r.name for r in rows))}")
    if params_only:
        from .bench.params import params_rows, render_markdown, write_params_report

        entries = params_rows(families, [row for row in rows if methods is None or row.name in methods])
        click.echo(render_markdown(entries), nl=False)
        for path in write_params_report(entries, report_dir):
            click.echo(str(path))
        return
    check_torch_device(device)
    settings = BenchSettings(device=device, runs=1 if quick else runs, warmup=warmup, backends=_names(backends),
                             methods=methods, large=device == "cuda" if large is None else large, batch=batch,
                             stages=not quick, peers=not quick, variants=not quick)
    # Written after every (row, backend): a run cut short (out of time on a lent GPU) keeps what it measured.
    data = run_table7(families, family_options, settings, report=_echo,
                      on_job_done=lambda partial: write_report(partial, report_dir))
    for path in write_report(data, report_dir):
        click.echo(str(path))
    click.echo(footprint_line())
