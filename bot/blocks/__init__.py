"""Every Block Kit payload TrainBot sends, as pure functions: data in, plain dicts out.

One module per surface: the `/train` form (modal), the job card (card), thread replies
(replies), what training tried and learned (training), subcommand answers (answers) and the
App Home (home). User-provided text (model names, notes, errors, logs) is escaped and every
builder keeps to Slack's limits by truncating, never by raising.
"""

from bot.blocks.answers import (
    error_message,
    help_message,
    list_message,
    logs_message,
    status_message,
)
from bot.blocks.base import Message
from bot.blocks.card import card_metadata, job_card
from bot.blocks.home import home_view
from bot.blocks.modal import TrainFormValues, train_modal
from bot.blocks.replies import (
    MAX_ROLLUP,
    cancelled_reply,
    expiry_notice,
    extended_reply,
    failure_reply,
    live_reply,
    note_reply,
    outcomes_rollup,
    stage_reply,
    warning_reply,
)
from bot.blocks.status import STATUS_EMOJI, STATUS_LABEL
from bot.blocks.training import training_reply

__all__ = [
    "STATUS_EMOJI",
    "STATUS_LABEL",
    "Message",
    "TrainFormValues",
    "cancelled_reply",
    "card_metadata",
    "error_message",
    "expiry_notice",
    "extended_reply",
    "failure_reply",
    "help_message",
    "home_view",
    "job_card",
    "list_message",
    "MAX_ROLLUP",
    "live_reply",
    "outcomes_rollup",
    "logs_message",
    "note_reply",
    "stage_reply",
    "status_message",
    "train_modal",
    "training_reply",
    "warning_reply",
]
