"""Post-hoc explanation of a recorded step: re-run its prompt through a local copy of the model, teacher-forcing
the recorded output, and draw where the model looked for chosen tokens.

- ``attention``: each chosen token's attention to the screenshot (exact, captured as in a live run), per layer
  group;
- ``gradcam``: Grad-CAM on the vision merger's output (the visual tokens the language model reads): the
  gradient of the chosen tokens' logits weights the merger's channels, ReLU of the weighted sum per token.

Works for steps recorded from a served model too, when a local copy of the same model is given.

    maps = explain_step(run_dir, 4, model="models/Qwen3-VL-2B-Thinking", words=["Publish"])
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel

from agent.confidence import target_tokens, word_tokens
from agent.prompt import ImagePart, Message, Prompt, TextPart, rebuild_prompt, tools_for
from agent.task import Task
from tools.errors import UsageError
from tools.images import check_image_file
from tracer.attention import AttentionMaps, MapFigures, figures, layer_groups
from tracer.attention_picture import attention_picture
from tracer.explain_files import ExplainMap, ExplainRecord, picture_name, write_explain_record
from tracer.schema import RunRecord, StepRecord
from tracer.store import MissingRunFile, read_run, read_step_file, read_steps

Method = Literal["attention", "gradcam"]


class ExplainError(UsageError, ValueError):
    """The step cannot be explained (no such step, no output, no usable model)."""


class Explanation(BaseModel):
    step: int
    method: str
    maps: dict[str, MapFigures]
    overlays: dict[str, Path]
    targets: dict[str, int]  # target -> number of tokens


def recorded_prompt(run: RunRecord, steps: dict[int, StepRecord], step: StepRecord, run_dir: Path) -> Prompt:
    """The prompt as it was sent (rebuilt the same way for script steps, which send none)."""
    if step.prompt is None:
        return rebuild_prompt(run, steps, step, lambda ref, index: _read(run_dir, ref, index))
    task = Task.recorded(run.task, run_id=run.run_id)
    messages = []
    for message in step.prompt:
        pieces = message.text.split("<image>")
        refs = list(message.images)
        content: list[TextPart | ImagePart] = []
        for i, piece in enumerate(pieces):
            if i > 0:
                ref = refs.pop(0)
                content.append(ImagePart(png=_read(run_dir, ref, step.index), ref=ref))
            if piece:
                content.append(TextPart(text=piece))
        messages.append(Message(role=message.role, content=content))
    return Prompt(messages=messages, tools=tools_for(task))


def _read(run_dir: Path, relative: str, step: int) -> bytes:
    """A recorded image, or an ExplainError naming the step and the file (deleted, outside the run folder, or not
    an image a screenshot can be: checked here, before a model is loaded for it)."""
    try:
        data = read_step_file(run_dir, relative, step)
        check_image_file(data, what=relative)
        return data
    except (MissingRunFile, ValueError) as exc:  # UnreadableImage among them
        raise ExplainError(str(exc)) from None


def explain_step(
    run_dir: Path,
    index: int,
    *,
    model: str | None = None,
    words: list[str] | None = None,
    method: Method = "attention",
    layers: str = "all",
    out_dir: Path | None = None,
    backend: object | None = None,
) -> Explanation:
    """Compute maps for the step's action and reasoning (or for ``words``) and write overlays to ``out_dir``."""
    run = read_run(run_dir)
    steps = {s.index: s for s in read_steps(run_dir)}
    if index not in steps:
        raise ExplainError(f"run {run.run_id} has no step {index} (it has {len(steps)})")
    step = steps[index]
    output = _model_output(step)
    prompt = recorded_prompt(run, steps, step, run_dir)  # its screenshots read and checked before a model loads
    screenshot = _read(run_dir, step.screenshot, step.index)
    if backend is None:
        model = model or run.model
        if not model:
            raise ExplainError("this run used no local model: pass --model with a local copy of the model")
        from agent.backends.local import LocalQwen3VL

        backend = LocalQwen3VL(model, decoding="plain")  # forwards only: nothing to compile
    inputs = backend.inputs(prompt)  # type: ignore[attr-defined]
    tokenizer = backend.tokenizer  # type: ignore[attr-defined]
    text = output.removeprefix("<think>\n") if backend.thinking else output  # type: ignore[attr-defined]
    out_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not out_ids:
        raise ExplainError(f"step {index} has an empty output to explain")
    decoded, tokens = backend._spans(out_ids, [0.0] * len(out_ids))  # type: ignore[attr-defined]
    targets = (
        {w: word_tokens(decoded, tokens, w) for w in words}
        if words
        else {k: v for k, v in target_tokens(decoded, tokens).items() if k in ("action", "reasoning", "output")}
    )
    missing = [w for w, idx in targets.items() if not idx]
    if words and missing:
        raise ExplainError(f"not in the step's output: {', '.join(missing)}")
    targets = {k: v for k, v in targets.items() if v}
    if method == "attention":
        maps = _attention_maps(backend, inputs, out_ids, targets)
    else:
        maps = _gradcam_maps(backend, inputs, out_ids, targets)
    if layers != "all":
        maps = AttentionMaps({k: v for k, v in maps.maps.items() if k.endswith("/" + layers)}, maps.resized_size)
    elif method == "attention":
        maps = AttentionMaps({k: v for k, v in maps.maps.items()}, maps.resized_size)
    out_dir = out_dir or run_dir / "explain"
    out_dir.mkdir(parents=True, exist_ok=True)
    click = None
    if step.coordinate is not None:
        s = step.coordinate.device_scale_factor
        click = (step.coordinate.css[0] * s, step.coordinate.css[1] * s)
    result: dict[str, MapFigures] = {}
    overlays: dict[str, Path] = {}
    for key, grid in maps.maps.items():
        result[key] = figures(
            grid, step.screenshot_size, click_px=click, evidence_box=step.evidence.box if step.evidence else None
        )
        path = out_dir / picture_name(index, method, key)
        path.write_bytes(attention_picture(screenshot, grid))
        overlays[key] = path
    counts = {k: len(v) for k, v in targets.items()}
    # A record beside the pictures: what was explained, how, and the figures (the viewer lists these).
    write_explain_record(
        out_dir,
        ExplainRecord(
            step=index,
            method=method,
            model=model or _backend_model(backend),
            words=list(words or []),
            layers=layers,
            created_at=datetime.now(timezone.utc),
            targets=counts,
            maps=[
                ExplainMap(
                    key=key,
                    target=key.split("/", 1)[0],
                    group=key.split("/", 1)[-1],
                    picture=path.name,
                    **result[key].model_dump(),
                )
                for key, path in overlays.items()
            ],
        ),
    )
    return Explanation(step=index, method=method, maps=result, overlays=overlays, targets=counts)


def _backend_model(backend: object) -> str | None:
    name = getattr(backend, "model", None)
    return name if isinstance(name, str) else None


def _model_output(step: StepRecord) -> str:
    if step.raw_output:
        return step.raw_output
    if step.tool_calls:
        import json

        calls = (json.dumps(c.model_dump(), ensure_ascii=False) for c in step.tool_calls)
        return "\n".join("<tool_call>\n" + call + "\n</tool_call>" for call in calls)
    raise ExplainError(f"step {step.index} has no output to explain")


def _attention_maps(backend: object, inputs: object, out_ids: list[int], targets: dict[str, list[int]]) -> AttentionMaps:
    import torch

    from agent.backends.attention import capture_after_generate
    from agent.backends.cache_name import returned_cache

    net = backend.net  # type: ignore[attr-defined]
    prompt_ids = inputs["input_ids"]  # type: ignore[index]
    sequences = torch.cat([prompt_ids, torch.tensor([out_ids], device=prompt_ids.device)], dim=1)
    with torch.inference_mode():
        prefill = net(**inputs, use_cache=True)  # type: ignore[arg-type]
    captured = capture_after_generate(net, inputs, sequences, returned_cache(prefill), image_token_id=backend.image_token_id)  # type: ignore[attr-defined]
    groups = layer_groups(len(captured.layers))
    return AttentionMaps.from_rows(
        captured.rows.numpy(), grid=captured.grid, resized_size=captured.resized_size, targets=targets, groups=groups
    )


def _gradcam_maps(backend: object, inputs: object, out_ids: list[int], targets: dict[str, list[int]]) -> AttentionMaps:
    import torch

    from agent.backends.attention import image_spans

    net = backend.net  # type: ignore[attr-defined]
    prompt_ids = inputs["input_ids"]  # type: ignore[index]
    prompt_len = prompt_ids.shape[1]
    start, end = image_spans(prompt_ids[0], backend.image_token_id)[-1]  # type: ignore[attr-defined]
    n_image = end - start
    grid_thw = inputs["image_grid_thw"][-1].tolist()  # type: ignore[index]
    grid = (int(grid_thw[1]) // 2, int(grid_thw[2]) // 2)
    full = torch.cat([prompt_ids, torch.tensor([out_ids], device=prompt_ids.device)], dim=1)
    mm = torch.cat(
        [
            inputs["mm_token_type_ids"],  # type: ignore[index]
            torch.zeros(
                (1, len(out_ids)),
                dtype=inputs["mm_token_type_ids"].dtype,  # type: ignore[index]
                device=prompt_ids.device,
            ),
        ],
        dim=1,
    )
    maps: dict[str, np.ndarray] = {}
    for target, idx in targets.items():
        captured: dict[str, torch.Tensor] = {}

        def hook(_module: object, _inp: object, out: torch.Tensor, captured: dict[str, torch.Tensor] = captured) -> None:
            out.retain_grad()
            captured["acts"] = out

        handle = net.model.visual.merger.register_forward_hook(hook)
        try:
            with torch.enable_grad():
                logits = net(
                    input_ids=full,
                    attention_mask=torch.ones_like(full),
                    pixel_values=inputs["pixel_values"],  # type: ignore[index]
                    image_grid_thw=inputs["image_grid_thw"],  # type: ignore[index]
                    mm_token_type_ids=mm,
                ).logits
                # Position prompt_len - 1 + j predicts generated token j.
                chosen = torch.stack([logits[0, prompt_len - 1 + j, out_ids[j]] for j in idx]).sum()
                chosen.backward()
        finally:
            handle.remove()
            net.zero_grad(set_to_none=True)
        acts = captured["acts"].detach()[-n_image:].float()
        grad = captured["acts"].grad
        if grad is None:  # the chosen logits did not depend on the merger's output
            raise ExplainError(f"Grad-CAM: no gradient reached the vision merger for {target!r}")
        grads = grad[-n_image:].float()
        weights = grads.mean(dim=0)
        cam = torch.relu((acts * weights).sum(dim=-1)).reshape(grid).cpu().numpy()
        total = float(cam.sum())
        maps[f"{target}/gradcam"] = (cam / total if total > 0 else cam).astype(np.float16)
    return AttentionMaps(maps, (grid[1] * 32, grid[0] * 32))


__all__ = ["ExplainError", "Explanation", "explain_step", "recorded_prompt"]
