"""The instruction the Think2Seg-RS prompter was trained with, and the chat built from it.

The fine-tuned weights (RicardoString/Think2Seg-RS-3B/-7B) were optimised by GRPO on this
exact wording, so it is reproduced verbatim (it is the model's input protocol): changing a
word changes the input distribution the policy was trained on. The model sees the image
resized to ``MODEL_SIZE`` x ``MODEL_SIZE`` pixels (aspect ratio not kept, as in training)
and answers in that pixel space.
"""

from __future__ import annotations

from typing import Any

#: Side of the square image the prompter sees; its answers are pixel coordinates in it.
#: 840 = 30 x 28 (Qwen2.5-VL's 14 px patch, 2x2 merged): a 30x30 grid of 900 image tokens.
MODEL_SIZE = 840

#: Longest query accepted into the prompt (characters); longer ones are cut.
MAX_QUERY_CHARS = 2000

SYSTEM_PROMPT = (
    "You are a remote sensing analysis assistant. Your task is to generate spatial prompts "
    "for the Segment Anything Model (SAM) based on a user's request."
)

# Verbatim training prompt; note the two spaces after "1." and "2." and the space after
# the example's "</think>".
_USER_TEMPLATE = (
    'Please find "{question}", identify the target. For each target instance, provide:\n'
    "1.  `bbox_2d`: A tight bounding box.\n"
    "2.  `positive_points`: Exactly two points, placed inside the target.\n"
    "Output your thinking process in <think> </think> tags.\n"
    "Output the final answer in <answer> </answer> tags with the specified JSON format. "
    "If no targets are found, output an empty list.\n"
    "i.e. <think> thinking process here </think> \n"
    '<answer>```json[{{"bbox_2d": [310,360,567,586], "positive_points": [[434, 474], '
    '[450, 460]]}}, {{"bbox_2d": [10,200,100,320], "positive_points": [[50, 250], '
    "[90, 300]]}}]```</answer>"
)


def clean_query(query: str) -> str:
    """The query as it goes into the prompt: whitespace collapsed, length bounded.

    Args:
        query: What the user typed.

    Returns:
        A single-line query of at most ``MAX_QUERY_CHARS`` characters.
    """
    return " ".join(str(query).split())[:MAX_QUERY_CHARS]


def user_prompt(query: str) -> str:
    """The user turn's text for a query.

    Args:
        query: What to find, in the user's words.

    Returns:
        The instruction with the query inserted.
    """
    return _USER_TEMPLATE.format(question=clean_query(query))


def build_messages(query: str) -> list[dict[str, Any]]:
    """Chat messages in the transformers multimodal format.

    The image placeholder comes first in the user turn, before the instruction, as in
    training; the processor's chat template expands it into the vision tokens.

    Args:
        query: What to find.

    Returns:
        ``[system, user]`` messages for ``processor.apply_chat_template``.
    """
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": user_prompt(query)}],
        },
    ]
