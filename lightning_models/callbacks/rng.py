"""Each rank's global RNG in every checkpoint, for any LightningModule; and each rank after the first its own draws."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist

RANK_SEED_STRIDE = 1_000_003  # rank r > 0 seeds from the run's seed + r * this: far from the seeds of other runs


class GlobalRNGState(pl.Callback):
    """Every rank's torch CPU and CUDA RNG state in the checkpoint, continued by a resumed fit (the CLI adds it to every
    run). A fresh fit reseeds rank r > 0 from the run's seed + r * ``RANK_SEED_STRIDE`` (else all ranks draw the same
    dropout masks). Lightning saves from rank 0 only: ``state_dict`` (called on every rank) gathers the ranks' states
    under ``ranks``, rank 0's also at the top level."""

    def __init__(self) -> None:
        self.resumed: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        states = {"torch": torch.get_rng_state(), **({"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {})}
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            ranks: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(ranks, states)
            states = {**ranks[0], "ranks": ranks}
        return states

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.resumed = state_dict  # applied when the fit starts, after the restored weights are in place

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        states, self.resumed, rank = self.resumed, None, trainer.global_rank
        saved = (states.get("ranks") or [states]) if states else []
        if rank >= len(saved):  # a fresh fit, or a rank the checkpoint has no state of: its own seed
            if rank > 0:
                torch.manual_seed((torch.initial_seed() + RANK_SEED_STRIDE * rank) % 2**63)
            return
        torch.set_rng_state(saved[rank]["torch"])
        if "cuda" in saved[rank] and torch.cuda.is_available() and len(saved[rank]["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(saved[rank]["cuda"])
