"""genbench: verl generalization regression benchmark."""
