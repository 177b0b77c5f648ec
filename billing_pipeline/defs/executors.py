"""Which executor runs the steps of a job, chosen by the deployment's environment.

- ``BILLING_EXECUTOR`` unset or ``multiprocess``: Dagster's default, one process per step on the
  machine that launched the run.
- ``in_process``: every step in the run's own process (small machines, debugging).
- ``celery``: steps are tasks on a Celery broker, run by any number of workers (production
  scale-out). Broker from ``BILLING_CELERY_BROKER`` (RabbitMQ ``pyamqp://...`` or Redis
  ``redis://...``), results from ``BILLING_CELERY_BACKEND`` (default: ``rpc://`` for RabbitMQ,
  the broker itself for Redis).

Workers must see the same code, the same ``BILLING_*`` variables (they rebuild the job from
them), the same disk for outputs and step values, and the run's Dagster instance (PostgreSQL).
Start them with ``celery -A billing_pipeline.defs.executors worker``: this module is the worker's
Celery app, configured from the same variables as the executor, so the two always agree.
"""

import os

import dagster as dg

EXECUTORS = ("multiprocess", "in_process", "celery")
DEFAULT_BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"


class ExecutorConfigError(ValueError):
    pass


def celery_settings() -> dict:
    """Broker and result backend of the celery executor and its workers, from the environment."""
    broker = os.getenv("BILLING_CELERY_BROKER") or DEFAULT_BROKER
    default_backend = broker if broker.startswith(("redis://", "rediss://")) else "rpc://"
    return {
        "broker": broker,
        "backend": os.getenv("BILLING_CELERY_BACKEND") or default_backend,
        # one step at a time per worker process: a long PDF shard never holds back queued steps
        "config_source": {"worker_prefetch_multiplier": 1},
    }


def executor_from_env() -> dg.ExecutorDefinition | None:
    """The executor ``BILLING_EXECUTOR`` names; None means Dagster's default (multiprocess)."""
    kind = (os.getenv("BILLING_EXECUTOR") or "multiprocess").strip().lower()
    if kind == "multiprocess":
        return None
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured(celery_settings(), name="celery")
    raise ExecutorConfigError(f"BILLING_EXECUTOR={kind!r}: expected one of {', '.join(EXECUTORS)}")


def make_celery_app():
    """The Celery app workers run: dagster-celery's step task on the configured broker."""
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app
    from dagster_celery.tasks import create_task

    settings = celery_settings()
    executor = CeleryExecutor.for_cli(
        broker=settings["broker"],
        backend=settings["backend"],
        config_source=settings["config_source"],
    )
    celery_app = make_app(executor.app_args())
    create_task(celery_app)
    return celery_app


def __getattr__(name: str):
    """``celery -A billing_pipeline.defs.executors worker`` looks up ``app``: built on first use,
    so importing the definitions never needs Celery or a broker."""
    if name == "app":
        globals()["app"] = make_celery_app()
        return globals()["app"]
    raise AttributeError(name)
