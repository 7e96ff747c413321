"""Cityscapes-C: the 16 image corruptions of Hendrycks & Dietterich (ImageNet-C) as Kamann & Rother use them
for semantic segmentation, as pure functions of (seed, frame, corruption, severity), and the robustness stage."""
