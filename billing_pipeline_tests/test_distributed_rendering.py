"""Invoice rendering fans out by customer shard: which shard renders a customer never changes."""

from billing_pipeline.defs import build_definitions
from billing_pipeline.defs.rendering import shard_of, split_into_shards
from billing_pipeline.defs.resources import resources_from_env
from billing_pipeline.rendering.invoice_files import DraftCopy


def test_a_customer_renders_in_the_same_shard_in_every_run_and_process():
    # sha256 of the id, not Python's per-process salted hash(): these values are fixed forever
    customers = ("acme", "globex", "initech", "umbrella", "weyland", "tyrell")
    assert [shard_of(c, 4) for c in customers] == [0, 3, 3, 0, 1, 3]


def test_every_shard_is_a_step_even_when_empty_and_keeps_document_order():
    drafts = [DraftCopy(f"c{i:02d}", f"sha of c{i:02d}") for i in range(10)]
    shards = split_into_shards(drafts, 4)
    assert len(shards) == 4
    assert sorted(d.customer_id for s in shards for d in s) == [d.customer_id for d in drafts]
    for index, shard in enumerate(shards):
        assert all(shard_of(d.customer_id, 4) == index for d in shard)
        assert shard == sorted(shard, key=lambda d: d.customer_id)
    assert split_into_shards([], 3) == [[], [], []]


def test_invoice_drafts_renders_in_one_dynamic_step_per_shard(tmp_path):
    job = build_definitions(resources_from_env(tmp_path)).resolve_job_def("month_end_job")
    graph = job.graph.node_named("invoice_drafts").definition
    assert {n.name for n in graph.nodes} == {
        "save_invoice_drafts",
        "render_invoice_shard",
        "summarize_invoice_drafts",
    }
    assert graph.node_named("save_invoice_drafts").definition.output_def_named("shards").is_dynamic


def test_the_executor_is_multiprocess_unless_the_deployment_names_celery(tmp_path, monkeypatch):
    monkeypatch.delenv("BILLING_EXECUTOR", raising=False)
    assert (
        build_definitions(resources_from_env(tmp_path))
        .resolve_job_def("month_end_job")
        .executor_def.name
        == "multi_or_in_process_executor"
    )  # Dagster's default: multiprocess unless run config says in_process
    monkeypatch.setenv("BILLING_EXECUTOR", "celery")
    monkeypatch.setenv("BILLING_CELERY_BROKER", "redis://127.0.0.1:6379/5")
    assert (
        build_definitions(resources_from_env(tmp_path))
        .resolve_job_def("month_end_job")
        .executor_def.name
        == "celery"
    )
