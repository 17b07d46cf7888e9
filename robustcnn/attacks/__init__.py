"""Attack families: perturbation, fooling, evolution, patch, shifts (each module registers its checks)."""
