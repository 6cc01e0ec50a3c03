"""Training: the frozen pass, the head, fine-tuning, and training across workers."""
