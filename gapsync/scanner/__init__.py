"""Static scanners: turn an artifact's bytes into findings, never loading or running them.

The model scanner (``models.ModelScanner``) detects each file's format by content and analyses
pickles, zips, joblib, NumPy, safetensors, GGUF, ONNX, Keras and SavedModel files; see
docs/scanner.md. ``base.scan_path`` walks a file or a directory.
"""
