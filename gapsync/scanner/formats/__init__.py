"""File-format analysers: each reads one kind of file (pickle, zip, tar, safetensors, GGUF,
ONNX, Keras, templates...) as a stream and turns its bytes into findings, never loading it.
"""
