"""ResShift and its one-step distillation SinSR (x4 residual-shifting diffusion in a VQ-f4 latent) on the
runtime side."""

from .family import ResShiftFamily

__all__ = ["ResShiftFamily"]
