"""The dataset: download and unpack it, index and check it, augment its minority classes, read unknown photos."""
