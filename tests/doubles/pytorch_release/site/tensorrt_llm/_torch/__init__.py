"""The PyTorch backend (the double only marks its presence)."""
