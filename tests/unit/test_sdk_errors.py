"""The one error tree: names, messages, hierarchy and the wire round trip."""

from __future__ import annotations

import pytest

from dynamic_workflows.sdk import (
    InstanceNotFoundError,
    IsolateLimitError,
    MissingDispatcherMetadataError,
    NonRetryableDelayError,
    NonRetryableError,
    RemoteError,
    WorkflowError,
    WorkflowFatalError,
    WorkflowInternalError,
    WorkflowNonDeterminismError,
    WorkflowTimeoutError,
    error_from_dict,
    error_to_dict,
)

PLAIN = [
    WorkflowError,
    WorkflowFatalError,
    NonRetryableDelayError,
    WorkflowTimeoutError,
    WorkflowInternalError,
    WorkflowNonDeterminismError,
    MissingDispatcherMetadataError,
]


@pytest.mark.parametrize("cls", PLAIN)
def test_name_is_class_name_and_message_is_str(cls: type[WorkflowError]) -> None:
    error = cls("something broke")
    assert error.name == cls.__name__
    assert error.message == "something broke"
    assert str(error) == "something broke"
    assert error.to_dict() == {"name": cls.__name__, "message": "something broke"}


def test_hierarchy() -> None:
    for cls in (
        WorkflowFatalError,
        WorkflowTimeoutError,
        WorkflowInternalError,
        WorkflowNonDeterminismError,
        InstanceNotFoundError,
        MissingDispatcherMetadataError,
        IsolateLimitError,
        NonRetryableError,
    ):
        assert issubclass(cls, WorkflowError)
    assert issubclass(NonRetryableDelayError, WorkflowFatalError)
    assert issubclass(WorkflowError, Exception)


def test_instance_not_found_message() -> None:
    error = InstanceNotFoundError("order-1")
    assert "instance.not_found" in str(error)
    assert error.instance_id == "order-1"
    assert error.name == "InstanceNotFoundError"


@pytest.mark.parametrize("limit", ["memory", "cpu", "wall"])
def test_isolate_limit_error_names_the_limit(limit: str) -> None:
    error = IsolateLimitError(limit)
    assert error.limit == limit
    assert limit in error.message
    assert error.name == "IsolateLimitError"


def test_non_retryable_error_keeps_a_custom_name() -> None:
    assert NonRetryableError("stop").to_dict() == {"name": "NonRetryableError", "message": "stop"}
    custom = NonRetryableError("card declined", name="PaymentDeclined")
    assert custom.to_dict() == {"name": "PaymentDeclined", "message": "card declined"}
    assert isinstance(custom, WorkflowError)


def test_error_to_dict_of_foreign_exceptions() -> None:
    assert error_to_dict(ValueError("bad")) == {"name": "ValueError", "message": "bad"}
    assert error_to_dict(KeyError("k")) == {"name": "KeyError", "message": "'k'"}
    assert error_to_dict(WorkflowTimeoutError("late")) == {
        "name": "WorkflowTimeoutError",
        "message": "late",
    }


@pytest.mark.parametrize("cls", PLAIN)
def test_round_trip_known_classes(cls: type[WorkflowError]) -> None:
    back = error_from_dict(error_to_dict(cls("m")))
    assert type(back) is cls
    assert back.to_dict() == {"name": cls.__name__, "message": "m"}


def test_round_trip_special_constructors() -> None:
    nf = error_from_dict(error_to_dict(InstanceNotFoundError("x")))
    assert type(nf) is InstanceNotFoundError
    assert nf.message == InstanceNotFoundError("x").message

    nr = error_from_dict({"name": "NonRetryableError", "message": "no"})
    assert type(nr) is NonRetryableError
    assert nr.to_dict() == {"name": "NonRetryableError", "message": "no"}

    lim = error_from_dict({"name": "IsolateLimitError", "message": "too much"}, limit="memory")
    assert type(lim) is IsolateLimitError
    assert lim.limit == "memory"
    assert lim.message == "too much"
    lim2 = error_from_dict({"name": "IsolateLimitError", "message": "m", "limit": "cpu"})
    assert isinstance(lim2, IsolateLimitError)
    assert lim2.limit == "cpu"


def test_unknown_names_become_remote_errors_keeping_the_name() -> None:
    back = error_from_dict({"name": "ValueError", "message": "bad input"})
    assert type(back) is RemoteError
    assert back.to_dict() == {"name": "ValueError", "message": "bad input"}
    assert isinstance(back, WorkflowError)


def test_malformed_dicts_still_give_an_error() -> None:
    back = error_from_dict({})
    assert isinstance(back, WorkflowError)
    assert back.name == "Error"
    assert back.message == ""
