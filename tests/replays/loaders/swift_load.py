"""Load an exported file with ms-swift's own dataset loader (run with an interpreter that has ``ms-swift``).

    python swift_load.py FILE

``swift.dataset.load_dataset`` on the path, as ``swift sft --dataset FILE`` / ``swift rlhf --dataset FILE``
does (AutoPreprocessor: the standard keys kept, images read as paths, a pair's ``rejected_response`` checked).
Prints one JSON line of what it got.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    path = sys.argv[1]
    try:
        from swift.dataset import load_dataset
    except ImportError:  # ms-swift 3.x
        from swift.llm import load_dataset  # type: ignore[no-redef]

    train, _ = load_dataset([path], num_proc=1, load_from_cache_file=False)
    rows = [train[i] for i in range(len(train))]
    images = [[image["path"] if isinstance(image, dict) else image for image in row.get("images") or []] for row in rows]
    print(
        json.dumps(
            {
                "rows": len(rows),
                "columns": sorted(train.column_names),
                "roles": [[m["role"] for m in row["messages"]] for row in rows],
                "last": [row["messages"][-1]["content"] for row in rows],
                "rejected_response": [row.get("rejected_response") for row in rows],
                "images": images,
                "images_exist": all(os.path.isfile(p) for row in images for p in row),
            }
        )
    )


if __name__ == "__main__":
    main()
