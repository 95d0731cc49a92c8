"""Train, validate, test or predict with any experiment config.

    python scripts/train.py fit --config configs/iris_mlp_classifier.yaml
    python scripts/train.py fit --config configs/iris_mlp_classifier.yaml --model.init_args.optimizer.init_args.lr 0.05
    python scripts/train.py test --config configs/iris_mlp_classifier.yaml --ckpt_path <path.ckpt>
    python scripts/train.py fit --help
"""

from lightning_models.training.train_cli import main

if __name__ == "__main__":
    main()
