"""Experience Reconstruction → dataset → QLoRA runs."""
