"""The two layouts the fine-tuning tools read as they are: LLaMA-Factory's and ms-swift's.

Both take one JSON object per line with ``messages`` (role/content, ``<image>`` where each image goes, in
order) and ``images``; they differ in where images are found and in how a preference pair is written.

LLaMA-Factory (``data/README.md`` "Sharegpt Format" and "Preference Dataset", and its loader
``src/llamafactory/data/converter.py`` ``SharegptDatasetConverter``): a dataset is named in
``dataset_info.json`` in the dataset dir; ``formatting: sharegpt`` with ``columns`` (messages, images, and for
a preference set ``chosen``/``rejected`` with ``ranking: true``) and ``tags`` (role/content keys and the
user/assistant/system role names). A system message first in ``messages`` is taken as the system prompt.
Image paths are relative to the dataset dir (``media_dir`` defaults to ``dataset_dir``). A pair is the prompt
(ending with a user turn) in ``messages`` and one assistant message each in ``chosen`` and ``rejected``.

ms-swift (``docs/source_en/Customization/Custom-dataset.md``: "the standard dataset format ... 'messages',
'rejected_response', ..., 'images'"; RLHF section): a file passed as ``--dataset PATH`` needs no registration;
images are read from the path as written, so they are absolute here. A DPO pair is the prompt followed by the
chosen answer as the LAST assistant message of ``messages``, and the rejected answer as ``rejected_response``
(a string); ``chosen``/``rejected`` are not keys it reads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

Flavor = Literal["llamafactory", "swift"]
FLAVORS: tuple[Flavor, ...] = ("llamafactory", "swift")
DATASET_INFO = "dataset_info.json"
_TAGS = {
    "role_tag": "role",
    "content_tag": "content",
    "user_tag": "user",
    "assistant_tag": "assistant",
    "system_tag": "system",
}


def image_path(flavor: Flavor, image: Path, dataset_dir: Path) -> str:
    """How the record names an image: relative to the dataset dir (LLaMA-Factory), absolute (ms-swift)."""
    if flavor == "swift":
        return str(image.resolve())
    return image.relative_to(dataset_dir).as_posix()


def sft_record(prompt: list[dict[str, str]], target: str, images: list[str]) -> dict[str, Any]:
    """One supervised example: the prompt, then the target as the assistant's answer (the same in both tools)."""
    return {"messages": [*prompt, {"role": "assistant", "content": target}], "images": images}


def dpo_record(flavor: Flavor, prompt: list[dict[str, str]], chosen: str, rejected: str, images: list[str]) -> dict[str, Any]:
    """One preference pair in the layout ``flavor`` reads."""
    if flavor == "swift":
        return {"messages": [*prompt, {"role": "assistant", "content": chosen}], "rejected_response": rejected, "images": images}
    return {
        "messages": prompt,
        "chosen": {"role": "assistant", "content": chosen},
        "rejected": {"role": "assistant", "content": rejected},
        "images": images,
    }


def dataset_entry(fmt: Literal["sft", "dpo"], file_name: str) -> dict[str, Any]:
    """LLaMA-Factory's ``dataset_info.json`` entry for an exported file."""
    columns = {"messages": "messages", "images": "images"}
    entry: dict[str, Any] = {"file_name": file_name, "formatting": "sharegpt"}
    if fmt == "dpo":
        entry["ranking"] = True
        columns |= {"chosen": "chosen", "rejected": "rejected"}
    entry["columns"] = columns
    entry["tags"] = dict(_TAGS)
    return entry


class DatasetInfoError(ValueError):
    """The ``dataset_info.json`` already there is not a JSON object: it is left as it is."""


def read_dataset_info(dataset_dir: Path) -> dict[str, Any]:
    """The datasets ``dataset_dir/dataset_info.json`` lists ({} when there is none); :class:`DatasetInfoError`
    when it cannot be kept (an export checks this before it writes anything)."""
    path = dataset_dir / DATASET_INFO
    if not path.exists():
        return {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetInfoError(f"{path} is not readable JSON ({exc}); move it away or fix it") from None
    if not isinstance(loaded, dict):
        raise DatasetInfoError(f"{path} is not a JSON object of datasets; move it away or fix it")
    return loaded


def write_dataset_info(dataset_dir: Path, name: str, entry: dict[str, Any]) -> Path:
    """Add (or replace) ``name`` in ``dataset_dir/dataset_info.json``, keeping the other datasets listed there."""
    path = dataset_dir / DATASET_INFO
    info = read_dataset_info(dataset_dir)
    info[name] = entry
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def usage(flavor: Flavor, fmt: Literal["sft", "dpo"], out: Path, name: str) -> str:
    """How to train on the file with the tool (a few lines to print)."""
    if flavor == "llamafactory":
        stage = "sft" if fmt == "sft" else "dpo"
        return (
            f"LLaMA-Factory: in your training YAML set\n"
            f"  stage: {stage}\n  dataset_dir: {out.parent.resolve()}\n  dataset: {name}\n"
            f"  template: qwen3_vl  (qwen3_vl_nothink for an Instruct model)"
        )
    rlhf = "swift sft" if fmt == "sft" else "swift rlhf --rlhf_type dpo"
    return f"ms-swift: {rlhf} --model MODEL --dataset {out.resolve()}"
