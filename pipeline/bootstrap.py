"""The one place that turns settings into working parts: engine, providers, worker."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from pipeline.codegen.base import CheckedAtStart, CodeGenerator
from pipeline.codegen.template import TemplateGenerator
from pipeline.events import ProgressSink
from pipeline.netguard import UrlGuard
from pipeline.runner import PipelineDeps
from pipeline.sandbox.base import SandboxProvider
from pipeline.settings import Settings
from pipeline.sources import ExternalSource
from pipeline.worker import JobWorker
from storage.db import make_engine, upgrade


def build_codegen(settings: Settings) -> CodeGenerator:
    if settings.codegen_choice == "groq":
        from pipeline.codegen.groq import DEFAULT_MODEL, GroqGenerator

        if not settings.groq_api_key:
            raise ValueError("TRAINBOT_CODEGEN=groq needs GROQ_API_KEY")
        return GroqGenerator(
            api_key=settings.groq_api_key,
            model=settings.groq_model or DEFAULT_MODEL,
            prompt_tokens=settings.groq_prompt_tokens,
            completion_tokens=settings.groq_completion_tokens,
        )
    return TemplateGenerator()


def build_sandboxes(settings: Settings) -> SandboxProvider:
    if settings.sandbox_choice == "e2b":
        from pipeline.sandbox.e2b import E2BSandboxProvider

        if not settings.e2b_api_key:
            raise ValueError("TRAINBOT_SANDBOX=e2b needs E2B_API_KEY")
        return E2BSandboxProvider(
            api_key=settings.e2b_api_key,
            template=settings.e2b_template,
            max_lifetime=settings.e2b_max_lifetime,
        )
    from pipeline.sandbox.local import LocalSandboxProvider

    return LocalSandboxProvider(
        settings.data_dir.resolve() / "sandboxes",
        memory_mb=settings.sandbox_memory_mb,
        cpu_seconds=settings.train_timeout,
        file_size_mb=max(512, settings.max_dataset_mb * 4),
        public_host=settings.public_host,
    )


def build_engine(settings: Settings, *, migrate: bool = True) -> Engine:
    engine = make_engine(settings.database_url)
    if migrate:
        upgrade(engine)
    return engine


@dataclass
class Services:
    settings: Settings
    deps: PipelineDeps
    worker: JobWorker

    @property
    def engine(self) -> Engine:
        return self.deps.engine


def bootstrap(
    settings: Settings,
    *,
    sink: ProgressSink,
    engine: Engine | None = None,
    codegen: CodeGenerator | None = None,
    sandboxes: SandboxProvider | None = None,
    sources: dict[str, ExternalSource] | None = None,
    guard: UrlGuard | None = None,
) -> Services:
    """Builds the services. Tests pass their own fakes for any part."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    codegen = codegen or build_codegen(settings)
    if isinstance(codegen, CheckedAtStart):
        codegen.start_check()  # once per process, in the background; a failed check only logs
    deps = PipelineDeps(
        engine=engine or build_engine(settings),
        settings=settings,
        codegen=codegen,
        fallback_codegen=None if codegen.name == "template" else TemplateGenerator(),
        sandboxes=sandboxes or build_sandboxes(settings),
        guard=guard or UrlGuard(allow_private=settings.allow_private_urls),
        sink=sink,
        sources=sources or {},
    )
    return Services(settings=settings, deps=deps, worker=JobWorker(deps))
