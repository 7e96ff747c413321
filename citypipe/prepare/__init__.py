"""citypipe.prepare: the prepare-labels stage's work (trainId cache, class statistics, weights)."""
