"""Load an exported dataset with LLaMA-Factory's own loader (run with an interpreter that has ``llamafactory``).

    python llamafactory_load.py DATASET_DIR NAME sft|dpo [MODEL_DIR]

Without MODEL_DIR: the dataset is read and aligned as LLaMA-Factory reads it (``get_dataset_list`` +
``_load_single_dataset``: dataset_info.json, the sharegpt converter, images found in the dataset dir). With
MODEL_DIR (a Qwen3-VL, e.g. the tiny one): the whole ``get_dataset`` path, tokenised with the ``qwen3_vl``
template and the model's processor, images included. Prints one JSON line of what it got.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("DISABLE_VERSION_CHECK", "1")  # LLaMA-Factory pins transformers; the loading is what is tested


def main() -> None:
    dataset_dir, name, stage = sys.argv[1], sys.argv[2], sys.argv[3]
    model_dir = sys.argv[4] if len(sys.argv) > 4 else None
    from llamafactory.data.loader import _load_single_dataset, get_dataset
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import get_train_args

    args = {
        "stage": "sft" if stage == "sft" else "dpo",
        "do_train": True,
        "model_name_or_path": model_dir or "unused",
        "dataset": name,
        "dataset_dir": dataset_dir,
        "template": "qwen3_vl",
        "cutoff_len": 8192,
        "output_dir": os.path.join(dataset_dir, ".lf-out"),
        "overwrite_cache": True,
        "preprocessing_num_workers": None,
        "finetuning_type": "lora",
        "report_to": "none",
    }
    model_args, data_args, training_args, _, _ = get_train_args(args)
    (attr,) = get_dataset_list([name], dataset_dir)
    aligned = _load_single_dataset(attr, model_args, data_args, training_args)
    rows = [aligned[i] for i in range(len(aligned))]
    out: dict[str, object] = {
        "ranking": attr.ranking,
        "formatting": attr.formatting,
        "rows": len(rows),
        "prompt_roles": [[m["role"] for m in r["_prompt"]] for r in rows],
        "response_roles": [[m["role"] for m in r["_response"]] for r in rows],
        "responses": [[m["content"] for m in r["_response"]] for r in rows],
        "system_starts": [r["_system"][:40] for r in rows],
        "images": [r["_images"] for r in rows],
    }
    if model_dir:
        from llamafactory.data import get_template_and_fix_tokenizer
        from llamafactory.model import load_tokenizer

        module = load_tokenizer(model_args)
        template = get_template_and_fix_tokenizer(module["tokenizer"], data_args)
        data = get_dataset(template, model_args, data_args, training_args, "sft" if stage == "sft" else "rm", **module)
        train = data["train_dataset"]
        out["tokenised_rows"] = len(train)
        out["tokenised_columns"] = sorted(train.column_names)
        first = train[0]
        key = "input_ids" if "input_ids" in first else "chosen_input_ids"
        out["first_len"] = len(first[key])
        out["first_text_end"] = module["tokenizer"].decode(first[key][-60:])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
