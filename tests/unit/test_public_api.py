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
