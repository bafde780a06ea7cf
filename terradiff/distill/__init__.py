"""Compression maths: PCA-based knowledge distillation and single-step distilled super-resolution.

Library code only (models, tensors, reports); the ``terradiff compress`` workflow that loads a
checkpoint, feeds these routines its training data and writes the compressed model is
:mod:`terradiff.compress`.
"""
