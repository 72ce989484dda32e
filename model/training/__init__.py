"""Teaching a student: distillation, LoRA training, and the task cutter and sandbox they
share with evaluation. The serving path never imports this package."""
