"""The rule engine: rules (Python or YAML) in a Router, evaluated against events, planned into calls.

router = load_rules("rules/")                 # or Router() + @router.on(...)
decisions = await evaluate(router, event)     # which rules fired, and why the others did not
calls = plan(event, decisions).calls          # what to send to the helpdesk
"""

from ticketwire.engine.actions import (
    Action,
    ActionError,
    ActionSpec,
    Plan,
    VendorSpec,
    action_names,
    make_action,
    plan,
    registered_vendors,
    vendor_spec,
)
from ticketwire.engine.conditions import (
    CheckResult,
    Condition,
    FieldSchema,
    compile_condition,
)
from ticketwire.engine.context import Context
from ticketwire.engine.durations import Instant, parse_instant
from ticketwire.engine.evaluate import Decision, evaluate, run_rule
from ticketwire.engine.loader import check_rules, load_rules
from ticketwire.engine.nodes import Node
from ticketwire.engine.operators import OPERATORS
from ticketwire.engine.router import EVENT_TYPES, Router, Rule
from ticketwire.engine.table import render_table
from ticketwire.engine.yamlrules import RULE_KEYS, compile_yaml, parse_yaml

__all__ = [
    "EVENT_TYPES",
    "OPERATORS",
    "RULE_KEYS",
    "Action",
    "ActionError",
    "ActionSpec",
    "CheckResult",
    "Condition",
    "Context",
    "Decision",
    "FieldSchema",
    "Instant",
    "Node",
    "Plan",
    "Router",
    "Rule",
    "VendorSpec",
    "action_names",
    "check_rules",
    "compile_condition",
    "compile_yaml",
    "evaluate",
    "load_rules",
    "make_action",
    "parse_instant",
    "parse_yaml",
    "plan",
    "registered_vendors",
    "render_table",
    "run_rule",
    "vendor_spec",
]
