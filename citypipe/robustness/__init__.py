"""The robustness stage (Cityscapes-C): the checkpoint's mIoU on val frames, clean and under each corruption of
citypipe/corruptions at each severity, the corrupted frames made in the DataLoader's workers."""
