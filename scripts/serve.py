"""Serve a trained model over HTTP: POST /predict, GET /health, GET /docs (FastAPI and uvicorn: pip install -e ".[serve]").
It listens on 127.0.0.1 unless --host says otherwise: it has no authentication (docs/predict.md).

    python scripts/serve.py lightning_logs/iris_mlp_classifier/version_0 --port 8000
    curl -s 127.0.0.1:8000/predict -H 'Content-Type: application/json' -d '[{"sepal_length": 5.9, ...}]'
"""

import argparse
import sys

from lightning_models.checks import ConfigError
from lightning_models.inference.predictor import check_device, load
from lightning_models.inference.serve import DEFAULT_MAX_BODY_BYTES, create_app
from lightning_models.training.checkpoints import choose_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .ckpt written by scripts/train.py, or a run folder (its best checkpoint)")
    parser.add_argument("--host", default="127.0.0.1", help="default: %(default)s (0.0.0.0: the network, unauthenticated)")
    parser.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                        help="largest request body accepted, else 413 (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps")
    args = parser.parse_args()
    if args.max_body_bytes < 1:
        parser.error(f"--max-body-bytes {args.max_body_bytes}: expected a positive number of bytes")
    try:
        import uvicorn
    except ImportError as missing:
        parser.exit(2, f"error: the server needs {missing.name}; install it with pip install -e '.[serve]'\n")
    try:
        check_device(args.device, "--device ")
        chosen = choose_checkpoint(args.checkpoint)
        predictor = load(chosen.path, device=args.device)
    except ConfigError as bad:  # a bad checkpoint, a device this machine lacks
        parser.exit(2, f"error: {bad}\n")
    app = create_app(predictor, chosen.path.name, args.max_body_bytes)
    print(chosen.line(), file=sys.stderr)
    print(f"serving {args.checkpoint} ({predictor.spec['kind']} model) on http://{args.host}:{args.port}: "
          "GET /health, POST /predict, GET /docs", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
