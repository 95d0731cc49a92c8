"""The global RNG of every rank in every checkpoint, for any LightningModule: a resumed run draws what an uninterrupted
one would, on each rank; and each rank after the first its own draws (dropout)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist

RANK_SEED_STRIDE = 1_000_003  # rank r > 0 seeds from the run's seed + r * this: far from the seeds of other runs


class GlobalRNGState(pl.Callback):
    """Saves torch's global RNG (dropout, weights drawn later) of every rank with the callbacks' state; a resumed fit
    continues each rank's own state, its CPU and CUDA generators both.

    Under DDP every rank starts from the same ``seed_everything`` seed, so without more they would draw the same dropout
    masks: a fresh fit reseeds rank r > 0 from the run's seed + r * ``RANK_SEED_STRIDE``; rank 0 keeps the run's seed,
    so a single process draws what it always drew. Lightning writes the checkpoint from rank 0 only, so ``state_dict``
    (called on every rank as Lightning saves) gathers all ranks' states into it under ``ranks``, rank 0's also at the
    top level (what a single process saves). Batch order and augmentation need no saving: they are a function of
    (seed, epoch, rank). Lightning restores callback state only when a fit resumes, so validate/test with a checkpoint
    leave the RNG alone. The CLI adds this callback to every run (``TemplateCLI``), so a module of the user's own
    resumes as exactly as the template's.
    """

    def __init__(self) -> None:
        self.resumed: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        states = own_state()
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
        states = saved[rank]
        torch.set_rng_state(states["torch"])
        if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])


def own_state() -> dict[str, Any]:
    """This process's CPU generator and, where CUDA runs, every visible device's."""
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states
