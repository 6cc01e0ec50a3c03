"""Tools around the pipeline: the `fish-classifier` command line and concurrent `dvc repro`."""
