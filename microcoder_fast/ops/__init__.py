"""The public tensor API: torch.library custom ops with autograd; Triton on CUDA, torch reference on CPU."""
