"""A container's logging is decided once (``LogPlan``), its driver hooks are declared with
defaults, and a shipper that cannot start is counted, reported and logged, not swallowed."""

from __future__ import annotations

import json
import logging

import pytest

from logpipe.driver import NONE, REMOTE, STORAGE, BatchLimits, hook
from logpipe.registry import LogPlan, log_plan
from runtime.containers import _with_plan
from runtime.shipping import Shipping
from runtime.spec import CONFIG_FILE, ContainerSpec
from runtime.state import State


def spec_for(tmp_path, log_type: str, plan: LogPlan | None = None, **opts) -> ContainerSpec:
    return ContainerSpec("b" * 64, "/plan", str(tmp_path), "2024-01-01T00:00:00Z", "img",
                         "", "", (), ("true",), (), "", "", "", {}, log_type, opts,
                         log_plan=plan)


@pytest.mark.parametrize("driver, kind, ships", [
    ("json-file", STORAGE, False), ("local", STORAGE, False), ("none", NONE, False),
    ("gelf", REMOTE, True), ("journald", REMOTE, True), ("loki", REMOTE, True)])
def test_registry_plans_each_driver_kind_once(driver, kind, ships):
    plan = log_plan(driver)
    assert (plan.driver, plan.kind, plan.ships) == (driver, kind, ships)
    assert plan.ref.startswith("drivers.")


def test_plan_is_stored_in_config_json_and_read_back(tmp_path):
    spec = spec_for(tmp_path, "gelf", log_plan("gelf"))
    spec.save()
    with open(tmp_path / CONFIG_FILE) as f:
        assert json.load(f)["LogPlan"] == {"Driver": "gelf", "Kind": "remote",
                                           "Ref": "drivers.gelf:GelfDriver", "Ships": True}
    assert ContainerSpec.load(str(tmp_path)).log_plan == spec.log_plan


def test_container_created_before_plans_gets_its_plan_on_adoption(tmp_path):
    old = spec_for(tmp_path, "local")
    old.save()  # a config.json as earlier versions wrote it: no LogPlan
    with open(tmp_path / CONFIG_FILE) as f:
        assert "LogPlan" not in json.load(f)
    loaded = ContainerSpec.load(str(tmp_path))
    assert loaded.log_plan is None and loaded.plan() == log_plan("local")
    adopted = _with_plan(loaded)
    assert adopted.log_plan == log_plan("local")
    assert ContainerSpec.load(str(tmp_path)).log_plan == log_plan("local")


def test_plan_of_an_uninstalled_driver_ships_nothing_and_is_not_stored(tmp_path):
    old = spec_for(tmp_path, "nosuch")
    old.save()
    assert old.plan() == LogPlan("nosuch", "", "", False)
    assert _with_plan(ContainerSpec.load(str(tmp_path))).log_plan is None


class BareRemote:
    """A remote driver written against the protocol alone: it declares no optional hook."""

    name = "bare"


def test_undeclared_hooks_take_the_contract_defaults():
    assert hook(BareRemote, "kind") == STORAGE
    assert hook(BareRemote, "libraries") == ()
    assert hook(BareRemote, "limits") == BatchLimits()
    assert hook(BareRemote, "max_retries") is None
    assert hook(BareRemote, "retry_wait") is None
    assert hook(BareRemote, "log_path")(None) is None
    opts = {"a": "b"}
    assert hook(BareRemote, "redacted_opts")(opts) == opts
    with pytest.raises(KeyError):
        hook(BareRemote, "max_retry")  # a misspelt hook is an error, not a silent default


def test_shipper_that_cannot_start_is_counted_reported_and_logged_once(tmp_path, caplog):
    # Created with a remote driver whose module has since gone: the start must not pass
    # silently (it used to read as "not a remote driver" and never ship).
    spec = spec_for(tmp_path, "gone", LogPlan("gone", REMOTE, "no_such_module:Gone", True))
    shipping = Shipping()
    with caplog.at_level(logging.ERROR, logger="logpipe.shipping"):
        shipping.ensure(spec)
        shipping.ensure(spec)
    assert [r.getMessage() for r in caplog.records] == [
        f"container {spec.id[:12]}: shipper did not start: error looking up logging plugin "
        'gone: plugin "gone" not found']
    stats = shipping.stats(spec, State())
    assert stats["StartFailures"] == 2
    assert stats["LastError"].startswith("shipper did not start: ")
    assert stats["Running"] is False
    metrics = shipping.metrics([(spec, State())])
    assert f'logpipe_shipper_start_failures_total{{container_id="{spec.id}",' in metrics
    assert 'driver="gone"} 2\n' in metrics
