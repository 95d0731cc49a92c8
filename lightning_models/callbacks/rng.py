"""The global RNG in every checkpoint, for any LightningModule: a resumed run draws what an uninterrupted one would."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch


class GlobalRNGState(pl.Callback):
    """Saves torch's global RNG (dropout, weights drawn later) with the callbacks' state; a resumed fit continues it.

    Batch order and augmentation need no saving: they are a function of (seed, epoch). Lightning restores callback
    state only when a fit resumes, so validate/test with a checkpoint leave the RNG alone. The CLI adds this callback
    to every run (``TemplateCLI``), so a module of the user's own resumes as exactly as the template's.
    """

    def __init__(self) -> None:
        self.resumed: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        states = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            states["cuda"] = torch.cuda.get_rng_state_all()
        return states

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.resumed = state_dict  # applied when the fit starts, after the restored weights are in place

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        states, self.resumed = self.resumed, None
        if states:
            torch.set_rng_state(states["torch"])
            if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(states["cuda"])
