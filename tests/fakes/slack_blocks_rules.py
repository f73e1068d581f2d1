"""Block Kit limits, checked the way Slack's Web API checks them.

slack_sdk's own `validate_json()` misses several rules Slack enforces (button text length,
input blocks in messages, a modal with inputs but no submit, unknown block types, unique ids),
so those are checked here on the raw payload first; slack_sdk's checks run after, on blocks
that passed. Reasons read like Slack's: "must be less than 3001 characters [json-pointer:...]".
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from slack_sdk.models.blocks import Block, BlockElement
from slack_sdk.models.views import View

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_MESSAGE_TEXT = 40_000
MAX_ID = 255
MAX_URL = 3000
MAX_PRIVATE_METADATA = 3000
MAX_MODAL_TITLE = 24

TEXT_TYPES = ("plain_text", "mrkdwn")
SELECT_TYPES = ("static_select", "multi_static_select", "overflow", "radio_buttons", "checkboxes")


def message_block_errors(blocks: Any) -> list[str]:
    checker = _Checker(surface="message")
    checker.blocks(blocks, "/blocks", MAX_MESSAGE_BLOCKS)
    return checker.errors


def view_errors(view: Any) -> list[str]:
    checker = _Checker(surface="view")
    if not isinstance(view, dict):
        checker.add("/view", "must be an object")
        return checker.errors
    kind = view.get("type")
    if kind not in ("modal", "home"):
        checker.add("/view/type", "must be one of modal, home")
    if kind == "modal":
        checker.text(view.get("title"), "/view/title", MAX_MODAL_TITLE, plain_only=True)
        for key in ("submit", "close"):
            if key in view:
                checker.text(view[key], f"/view/{key}", MAX_MODAL_TITLE, plain_only=True)
        blocks = view.get("blocks")
        has_input = isinstance(blocks, list) and any(
            isinstance(b, dict) and b.get("type") == "input" for b in blocks
        )
        if has_input and "submit" not in view:
            checker.add("/view/submit", "is required when an input block is present")
    for key, limit in (
        ("private_metadata", MAX_PRIVATE_METADATA),
        ("callback_id", MAX_ID),
        ("external_id", MAX_ID),
    ):
        value = view.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            checker.add(f"/view/{key}", f"must be a string of at most {limit} characters")
    checker.blocks(view.get("blocks"), "/view/blocks", MAX_VIEW_BLOCKS)
    if not checker.errors:
        checker.sdk_check(lambda: View(**view).validate_json(), "/view")
    return checker.errors


def metadata_errors(metadata: Any, *, allow_empty: bool) -> list[str]:
    """`event_type` a non-empty string and `event_payload` an object; `{}` clears on update."""
    if allow_empty and metadata == {}:
        return []
    if not isinstance(metadata, dict):
        return ["metadata must be an object [json-pointer:/metadata]"]
    errors = []
    event_type = metadata.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        errors.append("must be a non-empty string [json-pointer:/metadata/event_type]")
    if not isinstance(metadata.get("event_payload"), dict):
        errors.append("must be an object [json-pointer:/metadata/event_payload]")
    return errors


class _Checker:
    def __init__(self, *, surface: str) -> None:
        self.surface = surface
        self.errors: list[str] = []
        self._block_ids: set[str] = set()
        self._action_ids: set[str] = set()

    def add(self, pointer: str, reason: str) -> None:
        self.errors.append(f"{reason} [json-pointer:{pointer}]")

    def sdk_check(self, check: Any, pointer: str) -> None:
        try:
            check()
        except Exception as exc:  # slack_sdk raises several kinds on malformed input
            self.add(pointer, str(exc) or type(exc).__name__)

    def blocks(self, blocks: Any, pointer: str, limit: int) -> None:
        if not isinstance(blocks, list):
            self.add(pointer, "must be an array")
            return
        if len(blocks) > limit:
            self.add(pointer, f"must contain no more than {limit} items")
        for index, block in enumerate(blocks):
            self.block(block, f"{pointer}/{index}")

    def block(self, block: Any, ptr: str) -> None:
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            self.add(ptr, "must be a block object with a type")
            return
        before = len(self.errors)
        kind = block["type"]
        self.unique_id(block, "block_id", self._block_ids, ptr)
        if kind == "section":
            self.section(block, ptr)
        elif kind == "header":
            self.text(block.get("text"), f"{ptr}/text", 150, plain_only=True)
        elif kind == "actions":
            self.element_list(block.get("elements"), f"{ptr}/elements", 25, text_ok=False)
        elif kind == "context":
            self.element_list(block.get("elements"), f"{ptr}/elements", 10, text_ok=True)
        elif kind == "image":
            self.image(block, ptr)
        elif kind == "input":
            if self.surface == "message":
                self.add(f"{ptr}/type", "input blocks are only allowed in modals and Home tabs")
            self.text(block.get("label"), f"{ptr}/label", 2000, plain_only=True)
            if "hint" in block:
                self.text(block["hint"], f"{ptr}/hint", 2000, plain_only=True)
            self.element(block.get("element"), f"{ptr}/element")
        if len(self.errors) > before:
            return
        parsed = Block.parse(block)
        if parsed is None:
            self.add(f"{ptr}/type", f"unknown block type {kind!r}")
        else:
            self.sdk_check(parsed.validate_json, ptr)

    def section(self, block: dict[str, Any], ptr: str) -> None:
        fields = block.get("fields")
        if "text" not in block and not fields:
            self.add(ptr, "must have text or fields")
        if "text" in block:
            self.text(block["text"], f"{ptr}/text", 3000)
        if fields is not None:
            if not isinstance(fields, list) or len(fields) > 10:
                self.add(f"{ptr}/fields", "must be an array of no more than 10 items")
            else:
                for index, field in enumerate(fields):
                    self.text(field, f"{ptr}/fields/{index}", 2000)
        if "accessory" in block:
            self.element(block["accessory"], f"{ptr}/accessory")

    def element_list(self, elements: Any, ptr: str, limit: int, *, text_ok: bool) -> None:
        if not isinstance(elements, list) or not 1 <= len(elements) <= limit:
            self.add(ptr, f"must be an array of 1 to {limit} items")
            return
        for index, element in enumerate(elements):
            self.element(element, f"{ptr}/{index}", text_ok=text_ok)

    def element(self, element: Any, ptr: str, *, text_ok: bool = False) -> None:
        """An interactive element, an image, or (in context blocks only) a text object."""
        if not isinstance(element, dict) or not isinstance(element.get("type"), str):
            self.add(ptr, "must be an element object with a type")
            return
        kind = element["type"]
        if kind in TEXT_TYPES:
            if text_ok:
                self.text(element, ptr, 3000)
            else:
                self.add(f"{ptr}/type", "a text object is not an interactive element")
            return
        if BlockElement.parse(element) is None:
            self.add(f"{ptr}/type", f"unknown element type {kind!r}")
        self.unique_id(element, "action_id", self._action_ids, ptr)
        if kind == "button":
            self.text(element.get("text"), f"{ptr}/text", 75, plain_only=True)
            if "url" in element:
                self.url(element["url"], f"{ptr}/url")
            if len(str(element.get("value", ""))) > 2000:
                self.add(f"{ptr}/value", "must be less than 2001 characters")
            if element.get("style", "primary") not in ("primary", "danger"):
                self.add(f"{ptr}/style", "must be one of primary, danger")
        elif kind == "image":
            self.image(element, ptr)
        if "placeholder" in element:
            self.text(element["placeholder"], f"{ptr}/placeholder", 150, plain_only=True)
        if kind in SELECT_TYPES:
            self.options(
                element.get("options"),
                f"{ptr}/options",
                plain_only=kind not in ("radio_buttons", "checkboxes"),
            )

    def options(self, options: Any, ptr: str, *, plain_only: bool) -> None:
        if options is None:
            return
        if not isinstance(options, list) or len(options) > 100:
            self.add(ptr, "must be an array of no more than 100 items")
            return
        for index, option in enumerate(options):
            if not isinstance(option, dict):
                self.add(f"{ptr}/{index}", "must be an option object")
                continue
            self.text(option.get("text"), f"{ptr}/{index}/text", 75, plain_only=plain_only)
            value = option.get("value")
            if not isinstance(value, str) or len(value) > 150:
                self.add(f"{ptr}/{index}/value", "must be a string of at most 150 characters")

    def image(self, image: dict[str, Any], ptr: str) -> None:
        if "slack_file" not in image:
            self.url(image.get("image_url"), f"{ptr}/image_url")
        alt = image.get("alt_text")
        if not isinstance(alt, str) or not alt or len(alt) > 2000:
            self.add(f"{ptr}/alt_text", "must be a string of 1 to 2000 characters")

    def text(self, obj: Any, ptr: str, limit: int, *, plain_only: bool = False) -> None:
        if not isinstance(obj, dict):
            self.add(ptr, "must be a text object")
            return
        allowed = ("plain_text",) if plain_only else TEXT_TYPES
        if obj.get("type") not in allowed:
            self.add(f"{ptr}/type", f"must be one of {', '.join(allowed)}")
        text = obj.get("text")
        if not isinstance(text, str) or not text:
            self.add(f"{ptr}/text", "must be more than 0 characters")
        elif len(text) > limit:
            self.add(f"{ptr}/text", f"must be less than {limit + 1} characters")

    def url(self, url: Any, ptr: str) -> None:
        if not isinstance(url, str) or len(url) > MAX_URL:
            self.add(ptr, f"must be a string of at most {MAX_URL} characters")
            return
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            self.add(ptr, "must be a valid http or https URL")

    def unique_id(self, obj: dict[str, Any], key: str, seen: set[str], ptr: str) -> None:
        if key not in obj:
            return
        value = obj[key]
        if not isinstance(value, str) or not value or len(value) > MAX_ID:
            self.add(f"{ptr}/{key}", f"must be a string of 1 to {MAX_ID} characters")
        elif value in seen:
            self.add(f"{ptr}/{key}", f"duplicate {key} {value!r}")
        else:
            seen.add(value)
