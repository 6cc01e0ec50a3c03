"""The dataset's splits, in the order the Drive zip and the manifest hold them."""

SPLITS = ("train", "val", "test")
