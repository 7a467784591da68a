"""The Stable Diffusion parts the SD families share on the export side: loading, random checkpoints, LoRA, the
VAE posterior and the tiled VAE."""
