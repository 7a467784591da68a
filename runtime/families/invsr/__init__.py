"""InvSR (arbitrary-step x4 SR by diffusion inversion) on the runtime side."""

from .family import InvSRFamily

__all__ = ["InvSRFamily"]
