"""Using a trained detector: scoring images and videos (predict), exporting it to ONNX or TorchScript
(export) and the local web demo (app)."""
