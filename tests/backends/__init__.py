"""Backends that live in the test tree; the conformance suite runs every folder here like a registered one."""
