"""citypipe.prediction: a network's trainId predictions at full resolution (whole / slide, flip, scales)."""
