"""Source formats that are not ONNX or PyTorch: .tflite, Keras, SavedModel, quantized ONNX.

Each module turns its source into a float ONNX `ModelHandle` (or keeps it as is where a
target takes it natively) and records what it did in ``handle.meta["frontend"]`` for the
report.
"""
