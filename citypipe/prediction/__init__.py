"""citypipe.prediction: a model's trainId predictions at full resolution (whole / slide, flip, scales)."""
