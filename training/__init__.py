"""Experience Reconstruction → dataset → QLoRA runs."""

import engine  # noqa: F401  (first, so that its logging setup applies before peft imports bitsandbytes)
