"""The splits of every prepared dataset, in this order."""

SPLITS = ("train", "val", "test")
