"""The models: the from-scratch CNN and the five ImageNet backbones, each with its preprocessing inside."""
