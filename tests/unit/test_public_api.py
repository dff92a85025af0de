"""The public API is pinned: names added or removed here are a deliberate decision."""

import dynamic_workflows

EXPECTED = {
    # ARCHITECTURE.md's fixed names
    "Workflows", "WorkflowEntrypoint", "WorkflowEvent", "WorkflowStep", "NonRetryableError",
    "WorkerLoader", "WorkerCode", "wrap_workflow_binding", "DynamicWorkflowBinding",
    "create_dynamic_workflow_entrypoint", "dispatch_workflow", "MissingDispatcherMetadataError",
    # handles, status, context, clocks
    "WorkflowBinding", "InstanceHandle", "InstanceStatus", "WorkflowContext", "ManualClock",
    "SystemClock", "ExecutionInterrupted", "LoadRunnerContext", "WorkerStub", "EntrypointStub",
    "IsolateLimits", "StepContext", "WorkflowStepEvent", "WorkerEntrypoint", "Request",
    "Response",
    # the error tree (SEMANTICS.md, Conventions)
    "WorkflowError", "WorkflowFatalError", "NonRetryableDelayError", "WorkflowTimeoutError",
    "WorkflowInternalError", "WorkflowNonDeterminismError", "InstanceNotFoundError",
    "IsolateLimitError",
}  # fmt: skip


def test_all_is_exactly_the_public_api() -> None:
    assert set(dynamic_workflows.__all__) == EXPECTED
    assert len(dynamic_workflows.__all__) == len(EXPECTED)


def test_every_public_name_resolves() -> None:
    for name in dynamic_workflows.__all__:
        assert getattr(dynamic_workflows, name) is not None, name


def test_errors_form_one_tree() -> None:
    for name in EXPECTED:
        obj = getattr(dynamic_workflows, name)
        if isinstance(obj, type) and name.endswith("Error"):
            assert issubclass(obj, dynamic_workflows.WorkflowError), name


def test_every_name_in_all_is_routed_and_typed() -> None:
    """The lazy table, the TYPE_CHECKING imports and __all__ name the same things."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(dynamic_workflows.__file__).read_text())
    typed = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1
        for alias in node.names
    }
    assert typed == EXPECTED
    assert set(dynamic_workflows._WHERE) == EXPECTED


def test_importing_the_sdk_does_not_load_the_engine() -> None:
    """Isolates import dynamic_workflows.sdk; the package root must not pull in the engine,
    SQLite or anyio with it (checked in a fresh interpreter)."""
    import subprocess
    import sys

    probe = (
        "import sys, dynamic_workflows.sdk; "
        "print(sorted(m for m in ('sqlite3', 'anyio', 'dynamic_workflows.runtime', "
        "'dynamic_workflows.loader') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
