"""Fooling images: gradient optimisation (Nguyen et al. 2015), MAP-Elites over direct and CPPN encodings."""
