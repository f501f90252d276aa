"""COCO files: instances (ground truth), results (predictions), the results table and compressed RLE.

Torch-free, so that scoring a results file starts fast.
"""
