"""Deployment: ONNX export, a PyTorch-free runtime (onnxruntime, numpy, pillow), int8 quantization."""
