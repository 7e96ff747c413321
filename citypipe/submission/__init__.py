"""citypipe.submission: test-server labelIds PNGs, the zip, the validator, and the export-submission work."""
