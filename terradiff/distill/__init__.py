"""Compression: PCA-based knowledge distillation and single-step distilled super-resolution."""
