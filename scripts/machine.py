"""What this machine is, and the precision ``precision: auto`` picks on it: ``python scripts/machine.py``."""

from lightning_models.machine import describe

if __name__ == "__main__":
    print(describe())
