"""The PyTorch backend is present in 1.2.1 too (the double only marks its presence)."""
