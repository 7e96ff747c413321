"""citypipe.synth: CitySynth, the embedded dataset in the official Cityscapes layout."""
