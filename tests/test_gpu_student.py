"""The GPU student script's bookkeeping: what it records in the student's card."""

from __future__ import annotations

import sys

from bench.gpu_student import BATCH, CPU_RECIPE_EXAMPLES, STEPS, card, launcher_for, summarize


def test_the_recipe_is_ten_times_the_cpu_examples() -> None:
    assert STEPS * BATCH == 10 * CPU_RECIPE_EXAMPLES


def test_the_card_records_cost_and_pass_at_1_of_both_models() -> None:
    training = {
        "seconds": 600.0,
        "tokens": 2_000_000,
        "settings": {"steps": 1250, "batch_size": 8},
        "heldout_loss_before": 8.4,
        "heldout_loss_after": 1.2,
    }
    evaluation = {
        "rows": [
            {"model": "base", "tasks": 164, "pass_at_1": 0.35, "exact": 0.29},
            {"model": "gpu-student", "tasks": 164, "pass_at_1": 0.41, "exact": 0.33},
        ]
    }
    figures = summarize(training, evaluation, "NVIDIA H100")
    assert figures["tokens_per_s"] == 3333.3
    assert figures["minutes"] == 10.0
    assert figures["examples_vs_cpu_recipe"] == 10.0
    assert (figures["pass_at_1_base"], figures["pass_at_1_student"]) == (0.35, 0.41)
    text = card(figures)
    assert "| student | 0.41 | 0.33 |" in text and "NVIDIA H100" in text


def test_a_missing_row_reads_not_available() -> None:
    figures = summarize({"seconds": 0, "tokens": 0, "settings": {}}, {"rows": []}, "cpu")
    assert figures["tokens_per_s"] is None
    assert "| base | n/a | n/a |" in card(figures)


def test_several_gpus_run_under_torchrun() -> None:
    assert launcher_for(1) == [sys.executable]
    assert launcher_for(4)[1:3] == ["-m", "torch.distributed.run"]
    assert "--nproc_per_node=4" in launcher_for(4)
