"""The Stable Diffusion parts the SD families share on the runtime side (torch-free)."""
