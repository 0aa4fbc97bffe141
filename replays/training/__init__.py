"""Fine-tuning on labels: ``glassbox train sft|dpo`` (the export read back, a training loop, LoRA adapters)."""
