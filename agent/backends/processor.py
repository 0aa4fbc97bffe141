"""The Qwen3-VL processor a local backend loads: the stock one, or the image-only one without torchvision.

transformers is imported inside the function, so importing this module costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import Qwen3VLProcessor


def image_only_processor_class() -> type[Qwen3VLProcessor]:
    """``Qwen3VLProcessor`` without the video processor, which cannot be built without torchvision."""
    from transformers import Qwen3VLProcessor

    class Qwen3VLImageOnlyProcessor(Qwen3VLProcessor):
        # ProcessorMixin derives its sub-processors from this signature: no video_processor here means
        # from_pretrained loads only the image processor and the tokenizer.
        def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kwargs: Any):
            super().__init__(
                image_processor=image_processor,
                tokenizer=tokenizer,
                video_processor=None,
                chat_template=chat_template,
                **kwargs,
            )

    return Qwen3VLImageOnlyProcessor
