"""The interview playground: question sets, interviews, metrics, reports (Character-LLM's evaluation)."""

import engine  # noqa: F401  (first, so that its logging setup applies before peft imports bitsandbytes)
