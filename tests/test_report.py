"""The loop report's choice of iteration: by validation only, earliest on ties."""
from rsir_trt.report import KEYS, markdown, selected


def row(k, valid_ndcg20, test_recall10):
    valid = dict.fromkeys(KEYS, 0.1) | {"ndcg@20": valid_ndcg20}
    test = dict.fromkeys(KEYS, 0.05) | {"recall@10": test_recall10}
    return {"iteration": k, "valid": valid, "test": test, "train_sequences": 10, "train_interactions": 50,
            "train_seconds": 1.0, "best_epoch": 1, "generated_kept": 0, "generation_seconds": 0.0,
            "generation_seq_per_s": 0.0}


def test_selection_ignores_test_and_takes_the_earliest_tie():
    rows = [row(0, 0.030, 0.040), row(1, 0.036, 0.041), row(2, 0.036, 0.050), row(3, 0.035, 0.060)]
    assert selected(rows) == 1


def test_markdown_states_the_selected_iteration_and_its_gain():
    text = markdown([row(0, 0.030, 0.040), row(1, 0.031, 0.042)])
    assert "iteration 1, test R@10 0.0420 (+5.0% over iteration 0)" in text
    assert "| 0.0310 |" in text  # the selection metric is a column
