"""Settings from the environment. Read once, in the bootstrap; never at import time."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.budget import (
    MAX_BUDGET,
    MIN_BUDGET,
    BudgetRange,
    budget_range,
    format_budget,
    largest_budget,
    timeout_needed,
)
from pipeline.codegen import groq_models
from pipeline.limits import MIN_APP_LIFETIME


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    database_url: str = Field(default="sqlite:///trainbot.db", alias="DATABASE_URL")
    data_dir: Path = Field(default=Path(".trainbot"), alias="TRAINBOT_DATA_DIR")
    # Unset: Groq when GROQ_API_KEY is set, else the offline template (see `codegen_choice`).
    codegen: Literal["template", "groq"] | None = Field(default=None, alias="TRAINBOT_CODEGEN")
    # Unset: E2B when E2B_API_KEY is set, else the local sandbox (see `sandbox_choice`).
    sandbox: Literal["local", "e2b"] | None = Field(default=None, alias="TRAINBOT_SANDBOX")
    codegen_attempts: int = Field(default=3, ge=1, le=10, alias="TRAINBOT_CODEGEN_ATTEMPTS")
    groq_api_key: str = Field(default="", alias="GROQ_API_KEY")
    groq_model: str = Field(default="", alias="GROQ_MODEL")
    # Groq counts prompt + completion budget against the key's per-minute token limit before
    # it runs a request; keep the two together under that limit (see groq_models).
    groq_prompt_tokens: int = Field(
        default=groq_models.PROMPT_TOKENS, ge=1_000, alias="TRAINBOT_GROQ_PROMPT_TOKENS"
    )
    groq_completion_tokens: int = Field(
        default=groq_models.COMPLETION_TOKENS, ge=1_000, alias="TRAINBOT_GROQ_COMPLETION_TOKENS"
    )
    e2b_api_key: str = Field(default="", alias="E2B_API_KEY")
    e2b_template: str = Field(default="code-interpreter-v1", alias="TRAINBOT_E2B_TEMPLATE")
    # Seconds the E2B plan lets a sandbox live from its start: Hobby 3600, Pro 86400. The SDK
    # cannot tell the plan, and E2B cuts a longer lifetime short without a word.
    e2b_max_lifetime: int = Field(default=3600, ge=600, alias="TRAINBOT_E2B_MAX_LIFETIME")
    allow_private_urls: bool = Field(default=False, alias="TRAINBOT_ALLOW_PRIVATE_URLS")
    # Lets code an LLM wrote run in a sandbox that cannot cut it off from the network (the
    # local sandbox without bubblewrap), where it could reach the host's databases and ports.
    allow_unisolated_code: bool = Field(default=False, alias="TRAINBOT_ALLOW_UNISOLATED_CODE")
    app_ttl: int = Field(default=3600, ge=MIN_APP_LIFETIME, alias="TRAINBOT_APP_TTL")
    # Jobs one worker process runs at once. Unset: what its sandbox provider can drive
    # (`concurrent_jobs`: the local sandbox one a core, E2B many more, as a remote job only
    # waits on the network). TRAINBOT_SANDBOX_LIMIT still caps sandboxes across all workers.
    max_concurrent_jobs: int | None = Field(
        default=None, ge=1, le=1000, alias="TRAINBOT_MAX_CONCURRENT_JOBS"
    )
    # Jobs running at once across all workers, per Slack workspace and per person (0: no
    # limit). Jobs over a limit wait in the queue, and their card says so.
    max_jobs_per_workspace: int = Field(default=4, ge=0, alias="TRAINBOT_MAX_JOBS_PER_WORKSPACE")
    max_jobs_per_user: int = Field(default=2, ge=0, alias="TRAINBOT_MAX_JOBS_PER_USER")
    # Sandboxes alive at once (running jobs and live apps), all workers together. Unset: the
    # provider's own limit (E2B's plan: 20 on Hobby; none for the local sandbox).
    sandbox_limit: int | None = Field(default=None, ge=1, alias="TRAINBOT_SANDBOX_LIMIT")
    # A worker's claim on a job lasts this long unless renewed (it renews at a third of it);
    # a job whose worker died runs again elsewhere after at most this long.
    lease_seconds: float = Field(default=30.0, ge=1.0, alias="TRAINBOT_LEASE_SECONDS")
    # Times a job is started before a crash of its worker fails it instead.
    max_runs: int = Field(default=3, ge=1, le=10, alias="TRAINBOT_MAX_RUNS")
    # How long a stopping worker (SIGTERM) lets its jobs finish before handing them back.
    drain_seconds: float = Field(default=20.0, ge=0.0, alias="TRAINBOT_DRAIN_SECONDS")
    # How often a worker looks for queued jobs without a wake-up, and whether PostgreSQL's
    # LISTEN/NOTIFY wakes it at once (the poll alone must do on SQLite or without it).
    poll_seconds: float = Field(default=5.0, gt=0.0, alias="TRAINBOT_POLL_SECONDS")
    listen: bool = Field(default=True, alias="TRAINBOT_LISTEN")
    # How long before a live app stops its thread is told, with an Extend button.
    expiry_notice_seconds: int = Field(default=600, ge=0, alias="TRAINBOT_EXPIRY_NOTICE_SECONDS")
    train_timeout: int = Field(default=900, ge=5, alias="TRAINBOT_TRAIN_TIMEOUT")
    # Seconds of training search a job gets unless its submitter chose (`trainbot run
    # --budget`, the form's "Training time"). Unset: 60, or less when TRAINBOT_TRAIN_TIMEOUT
    # leaves no room for it (see `train_budgets`). Declared after train_timeout: checked
    # against it.
    train_budget_seconds: int | None = Field(
        default=None, ge=MIN_BUDGET, le=MAX_BUDGET, alias="TRAINBOT_TRAIN_BUDGET_SECONDS"
    )
    app_start_timeout: int = Field(default=60, ge=2, alias="TRAINBOT_APP_START_TIMEOUT")
    max_dataset_mb: int = Field(default=100, ge=1, alias="TRAINBOT_MAX_DATASET_MB")
    sandbox_memory_mb: int = Field(default=4096, ge=256, alias="TRAINBOT_SANDBOX_MEMORY_MB")
    public_host: str = Field(default="127.0.0.1", alias="TRAINBOT_PUBLIC_HOST")

    @field_validator("train_budget_seconds")
    @classmethod
    def _budget_fits_the_timeout(cls, budget: int | None, info: ValidationInfo) -> int | None:
        """A budget set on purpose that training could not finish in is the operator's
        mistake: said at start, not shortened in every job without a word."""
        timeout = info.data.get("train_timeout")
        if budget is None or not isinstance(timeout, int):
            return budget
        most = largest_budget(timeout)
        if most is not None and budget <= most:
            return budget
        lower = f", or lower the budget to at most {most} ({format_budget(most)})" if most else ""
        raise PydanticCustomError(
            "budget_does_not_fit",
            "{budget} s does not fit in TRAINBOT_TRAIN_TIMEOUT={timeout}: training needs time "
            "beyond its search to refit, score and save the model; raise TRAINBOT_TRAIN_TIMEOUT "
            "to at least {needed}{lower}",
            {
                "budget": budget,
                "timeout": timeout,
                "needed": timeout_needed(budget),
                "lower": lower,
            },
        )

    @property
    def train_budgets(self) -> BudgetRange:
        """The training budgets a job may ask for here, and the one it gets by default."""
        return budget_range(train_timeout=self.train_timeout, default=self.train_budget_seconds)

    @property
    def codegen_choice(self) -> str:
        return self.codegen or ("groq" if self.groq_api_key else "template")

    @property
    def sandbox_choice(self) -> str:
        return self.sandbox or ("e2b" if self.e2b_api_key else "local")
