"""Serve a trained model over HTTP: POST /predict, GET /health (FastAPI and uvicorn: pip install -e ".[serve]").

    python scripts/serve.py lightning_logs/iris_mlp_classifier/version_0/checkpoints/last.ckpt --port 8000
    curl -s 127.0.0.1:8000/predict -d '[{"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 4.2, "petal_width": 1.5}]'
    python scripts/serve.py --help
"""

from lightning_models.inference.serve import main

if __name__ == "__main__":
    main()
