"""Use a trained model: raw inputs to tensors, ``load()`` and ``PredictionNet``, ``scripts/predict.py``, the exports and
the HTTP server. Imports the core, callbacks and the run layer only."""
