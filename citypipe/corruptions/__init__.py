"""The 16 image corruptions of Hendrycks & Dietterich (ImageNet-C) that Cityscapes-C uses, as pure numpy functions
of (image, corruption, severity, seed, frame id): `corrupt.py`. No torch, no I/O: the robustness stage's loader
workers and `citypipe infer --corrupt` both call them."""
