"""segcore: train, evaluate and compare image-segmentation models."""
